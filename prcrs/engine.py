"""One run = one config evaluated by K-fold x R-repeat cross-validation, logged to MLflow."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import tempfile
import time
import warnings
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from prcrs import paths, schema, tracking, workers
from prcrs.config_checks import check_run_config
from prcrs.data.cohort import Cohort
from prcrs.data.fingerprint import UNIMPUTE
from prcrs.data.sources import load_cohort
from prcrs.data.targets import HorizonData, check_horizon, make_horizon
from prcrs.errors import ConfigError, TrainingError
from prcrs.metrics import METRICS, best_f1_threshold, fold_metrics
from prcrs.preprocessing import FoldPreprocessor
from prcrs.splits import inner_split, make_folds

log = logging.getLogger("prcrs")
RESULT_KEYS = ("data", "model", "ablation", "factors", "horizon", "protocol", "transfer", "trainer", "optimizer",
               "cv", "seed")


def compose_config(overrides: list[str]) -> DictConfig:
    """The run config of conf/ with Hydra `overrides`, outside `run.py`; a bad override is a
    one-line ConfigError."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(paths.CONFIG_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


def config_hash(cfg: DictConfig, cohort: Cohort) -> str:
    """Hash of everything that determines a run's results: the config (not where or under which
    study it is logged, nor the fold parallelism) and the data actually loaded."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    spec = {k: resolved.get(k) for k in RESULT_KEYS}
    spec["cv"] = {k: v for k, v in (spec["cv"] or {}).items() if k != "n_jobs"}  # fold parallelism: same results
    spec["factors"] = str(spec["factors"])  # `factors=1234` on the command line is read as a number
    spec["data_content"] = cohort.content_id
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def features_of(cfg: DictConfig) -> tuple[str, ...]:
    """Factor keys of the config's ablation and factor combination (validated)."""
    if str(cfg.factors) not in schema.COMBINATIONS:
        raise ConfigError(f"factors={cfg.factors} is not a platform combination; use one of "
                          f"{', '.join(schema.COMBINATIONS)}")
    try:
        return schema.select_features(cfg.ablation.name, str(cfg.factors))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def load_covid_for(cfg: DictConfig) -> Cohort | None:
    """The COVID-19 cohort for pretraining: real beside real CAR-T data, synthetic otherwise."""
    if cfg.transfer.name == "none":
        return None
    if cfg.data.kind == "synthetic":
        from prcrs.data.synthetic import synthetic_covid

        return synthetic_covid(seed=cfg.seed)
    return load_cohort("covid", cfg.data.path, seed=cfg.seed)


def build_estimator(cfg: DictConfig, features: tuple[str, ...], fill_values: dict, covid: Cohort | None = None):
    """The configured model with the protocol's fold preprocessing (and COVID pretraining).

    `fill_values`: the CAR-T sheet's label-imputation fill values (`Cohort.fill_values`), masked
    under `protocol.unimpute=sheet`."""
    protocol = cfg.protocol
    if protocol.unimpute not in UNIMPUTE:
        raise ConfigError(f"protocol.unimpute={protocol.unimpute} is unknown; use one of {', '.join(UNIMPUTE)}")
    pre = FoldPreprocessor(raw=protocol.raw, unimpute=protocol.unimpute, fill_values=fill_values,
                           missing_indicators=cfg.model.missing_indicators)
    estimator = instantiate(cfg.model.estimator, preprocessor=pre)
    if cfg.transfer.name == "covid":
        if cfg.model.kind != "deep":
            raise ConfigError(f"transfer=covid needs a deep model, not {cfg.model.name}")
        from prcrs.models.transfer import pretrained_state

        if covid is None:
            covid = load_covid_for(cfg)
        estimator.init_from = partial(pretrained_state, estimator, features, covid)
        estimator.freeze = cfg.transfer.freeze
    elif cfg.transfer.name != "none":
        raise ConfigError(f"unknown transfer {cfg.transfer.name!r}; use none or covid")
    return estimator


def check_model(cfg: DictConfig, features: tuple[str, ...], fill_values: dict, covid: Cohort | None = None) -> None:
    """Build the configured model once (a network with its optimizer) before any fold is
    trained: an option it cannot work with is a one-line ConfigError naming it."""
    from hydra.errors import InstantiationException

    try:
        estimator = build_estimator(cfg, features, fill_values, covid)
    except InstantiationException as exc:
        raise ConfigError(f"model={cfg.model.name}: {str(exc).splitlines()[0]}") from None
    estimator.check(features)


def inner_rows(cfg: DictConfig, data: HorizonData, rows: np.ndarray, seed: int
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """`rows` split into (fit, val): the inner patient-grouped validation rows for early stopping
    and the threshold, or (rows, None) when the protocol uses neither."""
    protocol = cfg.protocol
    if not (protocol.early_stopping or protocol.threshold == "inner"):
        return rows, None
    return inner_split(rows, data.grade_target, data.patient, seed=seed, val_fraction=cfg.cv.inner_val_fraction)


@dataclass
class Fitted:
    """A model fitted by `fit_rows`, with what its inner validation rows chose."""

    model: object  # a fitted prcrs.models.estimators.CRSModel
    threshold: float  # for P/R/F1, sensitivity and specificity
    val: np.ndarray | None  # the inner validation rows (indices into the data), None without them
    val_proba: np.ndarray | None  # P(severe) of those rows


def fit_rows(cfg: DictConfig, data: HorizonData, rows: np.ndarray, seed: int, covid: Cohort | None = None) -> Fitted:
    """The one way a model is fitted on `rows` (a CV fold's training rows, or every row for the
    platform): the inner split (`inner_rows`, seeded by `seed`), early stopping on it, then the
    threshold (max macro F1 on it, or the protocol's fixed one). No other row is read."""
    protocol = cfg.protocol
    fit, val = inner_rows(cfg, data, rows, seed)
    model = build_estimator(cfg, tuple(data.X.columns), data.fill_values, covid)
    early = protocol.early_stopping and val is not None
    model.fit(data.X.iloc[fit], data.y[fit], data.grade_today[fit],
              data.X.iloc[val] if early else None, data.y[val] if early else None)
    val_proba = None if val is None else model.predict_proba(data.X.iloc[val])
    threshold = (best_f1_threshold(data.y[val], val_proba) if protocol.threshold == "inner"
                 else float(protocol.threshold))
    return Fitted(model, threshold, val, val_proba)


def _fit_and_score(cfg: DictConfig, data: HorizonData, k: int, fold, covid: Cohort | None):
    """Fit on fold `k`'s training rows (`fit_rows`, seeded by seed + k), score on its test rows."""
    fitted = fit_rows(cfg, data, fold.train, cfg.seed + k, covid)
    model, val, threshold = fitted.model, fitted.val, fitted.threshold
    proba = model.predict_proba(data.X.iloc[fold.test])
    metrics = fold_metrics(data.y[fold.test], proba, threshold)
    metrics["threshold"] = threshold
    if val is not None:  # the search score: validation rows only
        metrics["val_auroc"] = fold_metrics(data.y[val], fitted.val_proba, threshold)["auroc"]
    if getattr(model, "best_epoch_", None) is not None:
        metrics["best_epoch"] = model.best_epoch_
    if getattr(model, "trainer_", None) is not None:
        metrics["epochs"] = model.trainer_.current_epoch
    return model, proba, metrics


@dataclass
class CVResult:
    folds: list[dict] = field(default_factory=list)  # one dict of metrics (+ threshold, ...) per fold
    oof: pd.DataFrame | None = None  # out-of-fold predictions
    n_parameters: int | None = None

    def summary(self) -> dict[str, float]:
        """cv_results_-style: split{k}_test_<m>, mean_test_<m>, std_test_<m>."""
        out = {}
        for k, fold in enumerate(self.folds):
            out.update({f"split{k}_test_{m}": fold[m] for m in METRICS})
        for m in METRICS:
            values = np.array([f[m] for f in self.folds], float)
            out[f"mean_test_{m}"] = float(np.nanmean(values))
            out[f"std_test_{m}"] = float(np.nanstd(values))
        out["diverged_folds"] = float(sum(f.get("diverged", 0) for f in self.folds))
        if any("val_auroc" in f for f in self.folds):  # a diverged fold has none
            out["mean_val_auroc"] = float(np.nanmean([f.get("val_auroc", np.nan) for f in self.folds]))
        return out


@dataclass
class FoldOutput:
    """What a fold worker sends back: no live model, so this process never imports Lightning."""

    proba: np.ndarray  # P(severe) of the test rows, shape (n_test,); NaN where the fold diverged
    metrics: dict[str, float]
    model: bytes | None = None  # the fitted model, joblib-pickled (logger.log_models)
    n_parameters: int | None = None


def _run_fold(cfg: DictConfig, data: HorizonData, k: int, fold, n_folds: int, covid: Cohort | None) -> FoldOutput:
    """Fit and score fold `k`; a diverged fold is recorded with NaN metrics."""
    start = time.perf_counter()
    try:
        model, proba, metrics = _fit_and_score(cfg, data, k, fold, covid)
    except TrainingError as exc:  # recorded, not hidden: the fold's metrics are NaN and say why
        log.warning(f"fold {k + 1}/{n_folds}: {exc}")
        model, proba = None, np.full(len(fold.test), np.nan)
        metrics = {**dict.fromkeys(METRICS, float("nan")), "threshold": float("nan"), "diverged": 1.0}
    metrics.update(seconds=time.perf_counter() - start, test_rows=len(fold.test))
    out = FoldOutput(proba, metrics, n_parameters=getattr(model, "n_parameters", None))
    if model is not None and cfg.logger.log_models:
        import io

        import joblib

        buffer = io.BytesIO()
        joblib.dump(model, buffer)
        out.model = buffer.getvalue()
    return out


def cross_validate(cfg: DictConfig, data: HorizonData, covid: Cohort | None = None,
                   on_fold=None) -> CVResult:
    """Fit and score the configured model on every fold; thresholds never see the test fold.

    Folds run `cv.n_jobs` at a time in worker processes (each with `trainer.threads` torch
    threads), so the results do not depend on `cv.n_jobs`; inside a worker of a parallel sweep
    they run one by one. `on_fold(k, n, output)` is called in this process, in fold order.
    """
    folds = make_folds(cfg.protocol.split, data.y, data.grade_target, data.patient, cfg.cv.folds,
                       cfg.cv.repeats, cfg.seed)
    if cfg.transfer.name == "covid":  # pretrain once, here, before the workers read the cache
        build_estimator(cfg, tuple(data.X.columns), data.fill_values, covid).init_from()
    jobs = [(cfg, data, k, fold, len(folds), covid) for k, fold in enumerate(folds)]
    result, oof = CVResult(), []
    try:
        outputs = workers.map_ordered(_run_fold, jobs, fold_jobs(cfg, len(folds)))
        for k, (fold, out) in enumerate(zip(folds, outputs, strict=True)):
            result.folds.append(out.metrics)
            result.n_parameters = out.n_parameters or result.n_parameters
            oof.append(pd.DataFrame({"repeat": fold.repeat, "fold": fold.fold, "patient": data.patient[fold.test],
                                     "day": data.day[fold.test], "horizon": data.horizon,
                                     "label": data.y[fold.test], "probability": out.proba,
                                     "threshold": out.metrics["threshold"]}))
            if on_fold is not None:
                on_fold(k, len(folds), out)
    except BrokenProcessPool:
        raise TrainingError("a fold worker process died (out of memory or killed); lower cv.n_jobs") from None
    result.oof = pd.concat(oof, ignore_index=True)
    return result


def fold_jobs(cfg: DictConfig, n_folds: int) -> int:
    """Folds trained at once: cv.n_jobs, at most one per fold, and 1 inside a parallel sweep's
    worker (no nested pools)."""
    from joblib.parallel import get_active_backend

    if get_active_backend()[0].nesting_level > 0:
        return 1
    return max(1, min(int(cfg.cv.n_jobs), n_folds))


NOT_LOGGED = "<not logged: logger.log_data_file=false>"


def data_file_name(cfg: DictConfig, source: str) -> str:
    """What the store may hold of the input file's name: the name (not the folder) when the user
    opts in with `logger.log_data_file=true`, else a placeholder (a file may be named after a
    patient). The synthetic cohort is always named."""
    if source == "synthetic":
        return source
    return Path(source).name if cfg.logger.get("log_data_file", False) else NOT_LOGGED


def redacted(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, list[str]]:
    """The config and overrides as logged: `data.path` reduced to `data_file_name`."""
    cfg = copy.deepcopy(cfg)
    if cfg.data.get("path"):
        cfg.data.path = data_file_name(cfg, str(cfg.data.path))
    shown = [f"data.path={data_file_name(cfg, o.split('=', 1)[1])}" if o.lstrip("+~").startswith("data.path=") else o
             for o in overrides]
    return cfg, shown


def _tags(cfg: DictConfig, cohort: Cohort, chash: str) -> dict[str, str]:
    return {"model": cfg.model.name, "ablation": cfg.ablation.name, "factors": str(cfg.factors),
            "horizon": str(cfg.horizon), "protocol": cfg.protocol.name, "transfer": cfg.transfer.name,
            "data_source": cohort.data_source, "data_file": data_file_name(cfg, cohort.source),
            "data_content": cohort.content_id, "data_patients": str(cohort.n_patients), "git_sha": tracking.git_sha(),
            "study": cfg.study, "config_hash": chash, **tracking.owner_tags()}


def _flat_params(cfg: DictConfig) -> dict[str, str]:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    flat = pd.json_normalize({k: resolved[k] for k in RESULT_KEYS if k in resolved}, sep=".").iloc[0].to_dict()
    flat["study"] = cfg.study
    return {k: str(v)[:500] for k, v in flat.items()}


def _log_parent_artifacts(mlflow, cfg: DictConfig, result: CVResult, overrides: list[str]) -> None:
    from prcrs.plots import curve_figures

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        (tmp / "overrides.txt").write_text("\n".join(overrides) + "\n")
        if cfg.logger.get("log_predictions", True):  # patient numbers (0-based, in file order) and days
            result.oof.to_csv(tmp / "oof_predictions.csv", index=False)
        title = f"{cfg.model.name} h{cfg.horizon} {cfg.protocol.name}"
        for name, fig in curve_figures(result.oof, title=title).items():
            fig.savefig(tmp / f"{name}.png", dpi=110, bbox_inches="tight")
        mlflow.log_artifacts(str(tmp))


def _log_fold_model(mlflow, model: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.joblib"
        path.write_bytes(model)
        mlflow.log_artifact(str(path), artifact_path="model")


def run(cfg: DictConfig, overrides: list[str] | None = None, output_dir: str | None = None) -> float:
    """Evaluate `cfg` by cross-validation, log it to MLflow, print the summary.

    Returns `cfg.optimized_metric` (default mean_test_auroc; mean_val_auroc under `search=ofat`)
    and writes the summary to `<output_dir>/summary.json`. A config whose finished parent run is
    already in the store is skipped (sweeps resume) and its stored metrics are returned.
    """
    import mlflow

    overrides = overrides or []
    check_run_config(cfg)
    features, horizon = features_of(cfg), check_horizon(cfg.horizon)
    optimized = cfg.get("optimized_metric", "mean_test_auroc")
    _check_optimized(optimized, cfg)
    n_jobs = fold_jobs(cfg, cfg.cv.folds * cfg.cv.repeats)
    if n_jobs > 1:  # workers get ready while the data and store load
        workers.prestart(cfg.model.kind)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        cohort = load_cohort(cfg.data.kind, cfg.data.path, seed=cfg.seed, n_patients=cfg.data.n_patients)
        covid = load_covid_for(cfg)
    for w in caught:
        log.warning(str(w.message))
    data = make_horizon(cohort, horizon, features)
    chash = config_hash(cfg, cohort)
    experiment_id = tracking.setup(cfg.study, cfg.logger.tracking_uri)
    label = f"{cfg.model.name} {cfg.ablation.name} f{cfg.factors} h{cfg.horizon} {cfg.protocol.name}"
    if reaped := tracking.reap_dead_runs(experiment_id):
        log.warning(f"{reaped} run(s) left RUNNING by a process that died were marked KILLED")
    if (done := _already_done(experiment_id, chash, label)) is not None:
        return _finish(done, optimized, output_dir)
    # built once where the folds will run
    list(workers.map_ordered(check_model, [(cfg, features, data.fill_values, covid)], n_jobs))
    tags = _tags(cfg, cohort, chash)
    logged_cfg, logged_overrides = redacted(cfg, overrides)
    with tracking.store_lock(cfg.logger.tracking_uri):  # one process claims a config: the check and the start
        if (done := _already_done(experiment_id, chash, label)) is not None:
            return _finish(done, optimized, output_dir)
        claimed = mlflow.start_run(experiment_id=experiment_id, run_name=label, tags={**tags, "role": "cv_parent"})
    with claimed as parent:
        mlflow.log_params(_flat_params(logged_cfg))
        mlflow.log_param("overrides", " ".join(logged_overrides)[:500] or "-")

        def on_fold(k, n, out: FoldOutput):
            metrics = out.metrics
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"{label} fold {k}", nested=True,
                                  tags={**tags, "role": "cv_fold", "fold": str(k)}):
                mlflow.log_metrics({f"test_{m}": v for m, v in metrics.items() if m in METRICS})
                extras = ("threshold", "seconds", "best_epoch", "epochs", "val_auroc", "diverged")
                mlflow.log_metrics({m: float(metrics[m]) for m in extras if m in metrics})
                if out.model is not None:
                    _log_fold_model(mlflow, out.model)
            log.info(f"[{label}] fold {k + 1}/{n}: AUROC {metrics['auroc']:.3f}, AUPRC {metrics['auprc']:.3f}, "
                     f"threshold {metrics['threshold']:.3f} ({metrics['seconds']:.1f} s)")

        result = cross_validate(cfg, data, covid, on_fold=on_fold)
        summary = result.summary()
        mlflow.log_metrics(summary)
        if result.n_parameters is not None:
            mlflow.log_param("n_parameters", result.n_parameters)
        _log_parent_artifacts(mlflow, logged_cfg, result, logged_overrides)
        log.info(f"[{label}] run {parent.info.run_id} on {tags['data_source']} data, {len(data)} rows, "
                 f"{len(features)} factors")
    print(format_summary(label, summary))
    return _finish(summary, optimized, output_dir)


def _already_done(experiment_id: str, chash: str, label: str) -> dict[str, float] | None:
    """The stored metrics of a config that finished, {} for one a live process is running now (it
    is not run twice), or None: run it."""
    done = tracking.finished_run(experiment_id, chash)
    if done is not None:
        summary = dict(done.data.metrics)
        log.info(f"[{label}] already finished (run {done.info.run_id}): mean AUROC "
                 f"{summary.get('mean_test_auroc', float('nan')):.3f}; skipped")
        return summary
    running = tracking.running_run(experiment_id, chash)
    if running is not None:
        tags = running.data.tags
        log.warning(f"[{label}] is being run now by process {tags.get('pid')} on {tags.get('host')} "
                    f"(run {running.info.run_id}); skipped here: rerun the command once it has finished")
        return {}
    return None


def _check_optimized(optimized: str, cfg: DictConfig) -> None:
    """Before any training: the metric a sweeper optimizes must be one the run will measure."""
    measured = {f"{kind}_test_{m}" for kind in ("mean", "std") for m in METRICS}
    if cfg.protocol.early_stopping or cfg.protocol.threshold == "inner":
        measured.add("mean_val_auroc")
    if optimized not in measured:
        raise ConfigError(f"optimized_metric {optimized!r} is not measured by this run (validation metrics need "
                          "protocol=honest or an inner split); use mean_test_<metric> or mean_val_auroc")


def _finish(summary: dict[str, float], optimized: str, output_dir: str | None) -> float:
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return float(summary.get(optimized, float("nan")))  # NaN when every fold diverged


def format_summary(label: str, summary: dict[str, float]) -> str:
    lines = [f"{label}", f"  {'metric':18s} mean ± sd"]
    for m in METRICS:
        lines.append(f"  {m:18s} {summary[f'mean_test_{m}']:.3f} ± {summary[f'std_test_{m}']:.3f}")
    return "\n".join(lines)
