"""Evaluate one config: check it, load its data, cross-validate it (`prcrs.engine`) and log it
(`prcrs.tracking.cv_logging`), unless the store already holds it (sweeps resume). `run.py` calls this."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from prcrs import interrupts, workers
from prcrs.code_fingerprint import code_fingerprint, same_numbers
from prcrs.config_checks import check_run_config
from prcrs.data.targets import check_horizon
from prcrs.engine import check_model, cross_validate, fold_jobs
from prcrs.errors import ConfigError, DataError
from prcrs.metrics import METRICS
from prcrs.progress import stage
from prcrs.run_config import (
    config_hash,
    features_of,
    history_spec,
    horizon_data,
    load_cart_for,
    load_covid_for,
    resolve_factors,
    run_spec,
)
from prcrs.tracking import leases, store
from prcrs.tracking.cv_logging import CVRunLogger, run_label

log = logging.getLogger("prcrs")


@dataclass
class Evaluation:
    """What `evaluate` found or made: the parent run in the store and its summary metrics."""

    run_id: str | None  # None when another live process is running this config now
    summary: dict[str, float]  # cv_results_-style (`CVResult.summary`); {} while another process runs it
    skipped: bool  # True when the store already held it (finished, or running elsewhere)

    def score(self, metric: str) -> float:
        """`metric` of the summary; NaN when it has none (every fold diverged, or running elsewhere)."""
        return float(self.summary.get(metric, float("nan")))


def evaluate(cfg: DictConfig, overrides: list[str] | None = None, output_dir: str | None = None) -> Evaluation:
    """Cross-validate `cfg`, log it to MLflow and print its summary; a config whose finished
    parent run is in the store is not run again (its stored metrics are returned). Writes the
    summary to `<output_dir>/summary.json` when given."""
    overrides = overrides or []
    interrupts.install()
    interrupts.check()  # a Ctrl-C during the previous config of a sweep
    check_run_config(cfg)
    auto = str(cfg.factors) == "auto"  # the combination follows the data: chosen once it is loaded
    if not auto:
        features_of(cfg)
    check_horizon(cfg.horizon)
    history_spec(cfg)  # before any data loads
    _check_optimized(cfg.get("optimized_metric", "mean_test_auroc"), cfg)
    n_jobs = fold_jobs(cfg.cv.n_jobs, cfg.cv.folds * cfg.cv.repeats)
    if n_jobs > 1:  # workers get ready while the data and store load
        workers.prestart(cfg.model.kind)
    with warnings.catch_warnings(record=True) as caught, stage("loading data"):
        warnings.simplefilter("always", UserWarning)
        cohort = load_cart_for(cfg)
        covid = load_covid_for(cfg)
    for w in caught:
        log.warning(str(w.message))
    if auto:
        log.info(f"factors=auto: combination {resolve_factors(cfg, cohort)}, the largest that half of the "
                 f"{len(cohort.frame)} patient-days can use")
    features = features_of(cfg)
    data = horizon_data(cfg, cohort)
    severe = int(data.y.sum())
    if severe == 0 or severe == len(data.y):
        raise DataError(f"{cohort.data_source} data at horizon {cfg.horizon}: {'no' if severe == 0 else 'every'} "
                        f"patient-day of its {len(data.y)} has severe CRS (grade >= 3) on the day predicted: one "
                        "class, nothing to tell apart")
    chash = config_hash(cfg, cohort)
    experiment_id = store.setup(cfg.study, cfg.logger.tracking_uri)
    label = run_label(cfg, cohort.data_source)
    if reaped := leases.reap_dead_runs(experiment_id, cfg.logger.tracking_uri):
        log.warning(f"{reaped} run(s) left RUNNING by a process that died were marked KILLED")
    if (done := _stored(experiment_id, chash, label, cfg.get("resume", "auto"))) is not None:
        return _written(done, output_dir, cfg)
    spec = run_spec(cfg, data.fill_values)  # what the folds read of the config, read once
    with stage(f"starting {n_jobs} fold worker(s) and building the model once"):  # not in any fold's time
        list(workers.map_ordered(check_model, [(spec, tuple(data.X.columns), covid)], n_jobs))
    with CVRunLogger(cfg, overrides, cohort, chash, experiment_id,  # another process may have claimed it since
                     already_stored=lambda: _stored(experiment_id, chash, label, cfg.get("resume", "auto"))) as logger:
        if logger.run_id is None:
            return _written(logger.found, output_dir, cfg)
        interrupts.check()  # one that landed while the run was being started (inside a store call)
        result = cross_validate(spec, data, covid, on_fold=logger.log_fold)
        interrupts.check()
        run_id = logger.log_result(result)
        log.info(f"[{label}] run {run_id} on {cohort.data_source} data, {len(data)} rows, {len(features)} factors")
    interrupts.check()  # a Ctrl-C while the results were logged, swallowed there: the run was ended FAILED
    summary = logger.metrics  # as stored: the CV summary and the clinical metrics
    print(format_summary(label, summary))
    return _written(Evaluation(run_id, summary, skipped=False), output_dir, cfg)


def _stored(experiment_id: str, chash: str, label: str, resume: str = "auto") -> Evaluation | None:
    """The stored evaluation of a config that finished with the code of now (`code_fingerprint`),
    or one with no summary for a config a live process is running now (it is not run twice), or
    None: run it. A finished run made by other code is run again, said in one line (the stored
    run is kept; reports take the newest); one stored before fingerprints were kept is resumed,
    said likewise; one made by code recorded as computing the same numbers (`code_lineage.json`)
    is resumed, unless a fold of it diverged: code is recorded as computing the same numbers on
    configs that train, and a fold that diverged is where a change may have made it train
    (`classifier.CRSClassifier` leaves out a non-finite step that used to turn every weight NaN).
    `resume="never"`: a finished run is run again all the same."""
    now = code_fingerprint()
    done = store.finished_run(experiment_id, chash, now) if resume == "auto" else None
    if done is not None:
        made_by = done.data.tags.get("code_fingerprint")
        summary = dict(done.data.metrics)
        linked = made_by is not None and (made_by == now or (same_numbers(made_by, now)
                                                               and not summary.get("diverged_folds")))
        if made_by is None or linked:
            log.info(f"[{label}] already finished (run {done.info.run_id}): mean AUROC "
                     f"{summary.get('mean_test_auroc', float('nan')):.3f}; skipped"
                     + ("" if made_by else " (stored before code fingerprints were kept: resume=never runs it again)"))
            return Evaluation(done.info.run_id, summary, skipped=True)
        folds = int(summary.get("diverged_folds", 0))
        diverged = f", and {folds} of its folds diverged" if folds else ""
        log.warning(f"[{label}] the stored run {done.info.run_id} was made by other code (code fingerprint "
                    f"{made_by}, now {now}){diverged}: running it again; the stored run is kept")
    running = store.running_run(experiment_id, chash)
    if running is not None:
        tags = running.data.tags
        log.warning(f"[{label}] is being run now by process {tags.get('pid')} on {tags.get('host')} "
                    f"(run {running.info.run_id}); skipped here: rerun the command once it has finished")
        return Evaluation(None, {}, skipped=True)
    return None


def _check_optimized(optimized: str, cfg: DictConfig) -> None:
    """Before any training: the metric a sweeper optimizes must be one the run will measure."""
    measured = {f"{kind}_test_{m}" for kind in ("mean", "std") for m in METRICS}
    if cfg.protocol.early_stopping or cfg.protocol.threshold == "inner":
        measured.add("mean_val_auroc")
    if optimized not in measured:
        raise ConfigError(f"optimized_metric {optimized!r} is not measured by this run (validation metrics need "
                          "protocol=honest or an inner split); use mean_test_<metric> or mean_val_auroc")


def task_of(cfg: DictConfig) -> dict:
    """What a run predicts, as a record: the horizon, the protocol and the factor combination
    (runs of one task are comparable; others are not)."""
    return {"horizon": int(cfg.horizon), "protocol": str(cfg.protocol.name), "factors": str(cfg.factors)}


def _written(evaluation: Evaluation, output_dir: str | None, cfg: DictConfig) -> Evaluation:
    """`evaluation`, its summary written to `<output_dir>/summary.json` and its record (run id,
    task, model) to `run.json` when an output folder is given (a sweep's job folder)."""
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "summary.json").write_text(json.dumps(evaluation.summary, indent=1, sort_keys=True))
        record = {"run_id": evaluation.run_id, "task": task_of(cfg), "model": str(cfg.model.name)}
        (Path(output_dir) / "run.json").write_text(json.dumps(record, indent=1))
    return evaluation


def format_summary(label: str, summary: dict[str, float]) -> str:
    """The console's summary: each metric's mean ± sd over the folds, then the pooled
    out-of-fold AUROC and AUPRC (the numbers of the ROC and PR figures), each labelled."""
    n = sum(1 for k in summary if k.startswith("split") and k.endswith("_test_auroc"))
    finite = int(summary.get("n_finite_folds", n))
    over = f"{n} folds" if finite == n else f"{finite} of {n} folds ({n - finite} diverged: no prediction)"
    lines = [f"{label}", f"  {'metric':18s} mean ± sd over {over}"]
    for m in METRICS:
        lines.append(f"  {m:18s} {summary[f'mean_test_{m}']:.3f} ± {summary[f'std_test_{m}']:.3f}")
    if "pooled_test_auroc" in summary:
        lines.append(f"  pooled out-of-fold AUROC {summary['pooled_test_auroc']:.3f}, AUPRC "
                     f"{summary['pooled_test_auprc']:.3f} (the ROC/PR figures' numbers)")
    return "\n".join(lines)
