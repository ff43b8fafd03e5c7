"""Evaluate one config: check it, load its data, cross-validate it (`prcrs.engine`) and log it
(`prcrs.cv_logging`), unless the store already holds it (sweeps resume). `run.py` calls this."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from prcrs import tracking, workers
from prcrs.config_checks import check_run_config
from prcrs.cv_logging import CVRunLogger, run_label
from prcrs.data.targets import check_horizon
from prcrs.engine import (
    check_model,
    config_hash,
    cross_validate,
    features_of,
    fold_jobs,
    format_summary,
    history_spec,
    horizon_data,
    load_cart_for,
    load_covid_for,
)
from prcrs.errors import ConfigError
from prcrs.metrics import METRICS
from prcrs.progress import stage

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
    check_run_config(cfg)
    features = features_of(cfg)
    check_horizon(cfg.horizon)
    history_spec(cfg)  # before any data loads
    _check_optimized(cfg.get("optimized_metric", "mean_test_auroc"), cfg)
    n_jobs = fold_jobs(cfg, cfg.cv.folds * cfg.cv.repeats)
    if n_jobs > 1:  # workers get ready while the data and store load
        workers.prestart(cfg.model.kind)
    with warnings.catch_warnings(record=True) as caught, stage("loading data"):
        warnings.simplefilter("always", UserWarning)
        cohort = load_cart_for(cfg)
        covid = load_covid_for(cfg)
    for w in caught:
        log.warning(str(w.message))
    data = horizon_data(cfg, cohort)
    chash = config_hash(cfg, cohort)
    experiment_id = tracking.setup(cfg.study, cfg.logger.tracking_uri)
    label = run_label(cfg)
    if reaped := tracking.reap_dead_runs(experiment_id):
        log.warning(f"{reaped} run(s) left RUNNING by a process that died were marked KILLED")
    if (done := _stored(experiment_id, chash, label)) is not None:
        return _written(done, output_dir)
    with stage(f"starting {n_jobs} fold worker(s) and building the model once"):  # not in any fold's time
        list(workers.map_ordered(check_model, [(cfg, tuple(data.X.columns), data.fill_values, covid)], n_jobs))
    with CVRunLogger(cfg, overrides, cohort, chash, experiment_id,  # another process may have claimed it since
                     already_stored=lambda: _stored(experiment_id, chash, label)) as logger:
        if logger.run_id is None:
            return _written(logger.found, output_dir)
        result = cross_validate(cfg, data, covid, on_fold=logger.log_fold)
        run_id = logger.log_result(result)
        log.info(f"[{label}] run {run_id} on {cohort.data_source} data, {len(data)} rows, {len(features)} factors")
    summary = logger.metrics  # as stored: the CV summary and the clinical metrics
    print(format_summary(label, summary))
    return _written(Evaluation(run_id, summary, skipped=False), output_dir)


def _stored(experiment_id: str, chash: str, label: str) -> Evaluation | None:
    """The stored evaluation of a config that finished, or one with no summary for a config a
    live process is running now (it is not run twice), or None: run it."""
    done = tracking.finished_run(experiment_id, chash)
    if done is not None:
        summary = dict(done.data.metrics)
        log.info(f"[{label}] already finished (run {done.info.run_id}): mean AUROC "
                 f"{summary.get('mean_test_auroc', float('nan')):.3f}; skipped")
        return Evaluation(done.info.run_id, summary, skipped=True)
    running = tracking.running_run(experiment_id, chash)
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


def _written(evaluation: Evaluation, output_dir: str | None) -> Evaluation:
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "summary.json").write_text(json.dumps(evaluation.summary, indent=1, sort_keys=True))
    return evaluation
