"""Cross-validation of one config: the config read once into a `RunSpec`, data in, a `CVResult`
out, nothing logged.

`prcrs.evaluate` adds the store (resume, MLflow logging through `prcrs.cv_logging`); this module
knows nothing of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from prcrs import explain, paths, schema, workers
from prcrs.alarms import specificity_threshold
from prcrs.data.cohort import Cohort
from prcrs.data.fingerprint import UNIMPUTE
from prcrs.data.history import HistorySpec
from prcrs.data.sources import load_cohort
from prcrs.data.targets import HorizonData, check_horizon, make_horizon
from prcrs.errors import ConfigError, TrainingError
from prcrs.fitting import Fitted, fit_fold, severe_probability
from prcrs.metrics import METRICS, auprc, auroc, fold_metrics
from prcrs.preprocessing import FoldPreprocessor
from prcrs.splits import make_folds

log = logging.getLogger("prcrs")
RESULT_KEYS = ("data", "model", "ablation", "factors", "horizon", "history", "protocol", "transfer", "trainer",
               "optimizer", "cv", "seed")
# Options added after runs were stored, at the value those runs used: left out of the hash while
# they keep it, so the stored runs are still found (resumed, reported) and not run again.
HASH_NEUTRAL = {"trainer.accelerator": "cpu", "trainer.devices": 1, "model.estimator.accelerator": "cpu",
                "model.estimator.devices": 1, "transfer.val_fraction": 0.15, "protocol.alarm_specificity": 0.9,
                "history": {"name": "none", **asdict(HistorySpec())}}  # conf/history/none.yaml


def compose_config(overrides: list[str]) -> DictConfig:
    """The run config of conf/ with Hydra `overrides`, outside `run.py`; a bad override is a
    one-line ConfigError."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    import prcrs.models.catalogue  # noqa: F401  ${models:<study>} in the experiment configs

    try:
        with initialize_config_dir(config_dir=str(paths.CONFIG_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


def config_hash(cfg: DictConfig, cohort: Cohort) -> str:
    """Hash of everything that determines a run's results: the config (not where or under which
    study it is logged, nor the fold parallelism) and the data actually loaded."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    spec = {k: resolved[k] for k in RESULT_KEYS if k in resolved}  # a group added later is absent before
    # fold parallelism and the explained rows change no prediction (checked: 97 stored configs identical)
    spec["cv"] = {k: v for k, v in (spec["cv"] or {}).items() if k not in ("n_jobs", "explain_rows")}
    spec["model"] = {k: v for k, v in spec["model"].items() if k != "catalogue"}  # where it is listed, not what it is
    for dotted, value in HASH_NEUTRAL.items():
        *parents, key = dotted.split(".")
        node = spec
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(key, value) == value:
            node.pop(key, None)
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


def history_spec(cfg: DictConfig) -> HistorySpec:
    """The config's `history` (conf/history/), checked: a ConfigError names a bad value."""
    options = {k: v for k, v in cfg.history.items() if k != "name"}
    unknown = set(options) - set(HistorySpec.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"history.{sorted(unknown)[0]} is not a history option; use "
                          f"{', '.join(HistorySpec.__dataclass_fields__)}")
    window = options.get("window", 0)
    if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= 7:
        raise ConfigError(f"history.window={window} must be a whole number of days in 0..7")
    for name, value in options.items():
        if name != "window" and not isinstance(value, bool):
            raise ConfigError(f"history.{name}={value} must be true or false")
    spec = HistorySpec(**options)
    reads_days = "window" in (cfg.model.get("estimator", {}).get("backbone") or {})  # a sequence network
    if reads_days and (spec != HistorySpec(window=spec.window) or cfg.model.get("missing_indicators")):
        raise ConfigError(f"model={cfg.model.name} reads whole days: use history=days or none (lags only, no "
                          "changes, extremes or covariates) and model.missing_indicators=false")
    if spec.any and cfg.transfer.name != "none" and not reads_days:
        raise ConfigError(f"transfer={cfg.transfer.name} pretrains on single COVID-19 samples: with a history, only "
                          "a sequence network (model=gru, day_transformer, rcmnet) can use it, its per-day part "
                          "pretrained")
    if spec.any and cfg.protocol.unimpute == "fold":
        raise ConfigError("history needs protocol.unimpute=sheet or none: fill values learnt per training fold cannot "
                          "be masked before a patient's past is computed")
    return spec


def horizon_data(cfg: DictConfig, cohort: Cohort) -> HorizonData:
    """The rows a run fits and scores: day t's factors of the config's ablation and combination,
    its history, and the grade of day t + horizon."""
    return make_horizon(cohort, check_horizon(cfg.horizon), features_of(cfg), history_spec(cfg),
                        mask_history=cfg.protocol.unimpute == "sheet")


def load_cart_for(cfg: DictConfig) -> Cohort:
    """The run's CAR-T cohort: `data.path`, $PRCRS_DATA_DIR or `paths.data_dir` (real), or the
    synthetic one (`data=synthetic`, or with a warning when no real sheet is found)."""
    return load_cohort(cfg.data.kind, cfg.data.path, seed=cfg.seed, n_patients=cfg.data.n_patients,
                       raw_dir=cfg.paths.data_dir)


def load_covid_for(cfg: DictConfig) -> Cohort | None:
    """The COVID-19 cohort for pretraining: real beside real CAR-T data, synthetic otherwise."""
    if cfg.transfer.name == "none":
        return None
    if cfg.data.kind == "synthetic":
        from prcrs.data.synthetic import synthetic_covid

        return synthetic_covid(seed=cfg.seed)
    return load_cohort("covid", cfg.data.path, seed=cfg.seed, raw_dir=cfg.paths.data_dir)


@dataclass(frozen=True)
class FitSpec:
    """How a model is fitted on a set of rows (`fit_rows`): the protocol's choices."""

    val_fraction: float  # cv.inner_val_fraction: the inner patient-grouped validation share
    early_stopping: bool  # protocol.early_stopping: networks stop on the validation loss
    threshold: str | float  # protocol.threshold: "inner" (best macro F1 on validation rows) or a number
    alarm_specificity: float  # protocol.alarm_specificity: of the alarm threshold, on validation rows


@dataclass(frozen=True)
class CVDesign:
    """The folds of a cross-validation and what each one reports besides its metrics."""

    split: str  # protocol.split: "row" (the paper) or "patient"
    folds: int
    repeats: int
    seed: int  # of the folds; fold k fits with seed + k
    n_jobs: int  # folds trained at once
    explain_rows: int  # test rows explained per fold (global importance)


@dataclass(frozen=True)
class TransferSpec:
    """COVID-19 pretraining (`transfer=covid`) of a network before it is fitted."""

    features: tuple[str, ...]  # the factors pretrained on
    val_fraction: float  # transfer.val_fraction
    freeze: str  # transfer.freeze
    cache_dir: str | None  # paths.cache_dir


@dataclass(frozen=True)
class RunSpec:
    """What fitting and cross-validating a config reads of it, read and checked once (`run_spec`):
    the model to build, its fold preprocessing, any pretraining, how it is fitted, the CV
    design. Fold workers receive this, never the config; `build` makes the estimator there, so
    this process need not import the model's libraries."""

    model: str  # model.name
    estimator: dict  # model.estimator, resolved: what `hydra.utils.instantiate` builds
    preprocessing: dict  # `FoldPreprocessor` parameters: the protocol's raw/unimpute, the sheet's fill values
    transfer: TransferSpec | None
    fit: FitSpec
    design: CVDesign
    log_models: bool  # logger.log_models: keep each fold's fitted model

    def build(self, covid: Cohort | None = None):
        """The unfitted estimator (a `prcrs.models.estimators.CRSModel`); `covid`: the COVID-19
        cohort, needed under `transfer`. An option the model refuses is a one-line ConfigError."""
        from hydra.errors import InstantiationException

        try:
            estimator = instantiate(self.estimator, preprocessor=FoldPreprocessor(**self.preprocessing))
        except InstantiationException as exc:
            raise ConfigError(f"model={self.model}: {str(exc).splitlines()[0]}") from None
        if self.transfer is None:
            return estimator
        from prcrs.models.transfer import Pretraining

        t = self.transfer  # set after: Hydra would read a dataclass passed to instantiate as a config
        return estimator.set_params(init_from=Pretraining(t.features, covid, t.val_fraction, t.cache_dir),
                                    freeze=t.freeze)


def run_spec(cfg: DictConfig, fill_values: dict) -> RunSpec:
    """The `RunSpec` of a config; `fill_values`: the CAR-T sheet's label-imputation fill values
    (`Cohort.fill_values`), masked under `protocol.unimpute=sheet`."""
    protocol = cfg.protocol
    if protocol.unimpute not in UNIMPUTE:
        raise ConfigError(f"protocol.unimpute={protocol.unimpute} is unknown; use one of {', '.join(UNIMPUTE)}")
    transfer = None
    if cfg.transfer.name == "covid":
        if cfg.model.kind != "deep":
            raise ConfigError(f"transfer=covid needs a deep model, not {cfg.model.name}")
        transfer = TransferSpec(features_of(cfg), cfg.transfer.val_fraction, cfg.transfer.freeze, cfg.paths.cache_dir)
    elif cfg.transfer.name != "none":
        raise ConfigError(f"unknown transfer {cfg.transfer.name!r}; use none or covid")
    return RunSpec(model=str(cfg.model.name), estimator=OmegaConf.to_container(cfg.model.estimator, resolve=True),
                   preprocessing={"raw": protocol.raw, "unimpute": protocol.unimpute, "fill_values": fill_values,
                                  "missing_indicators": cfg.model.missing_indicators},
                   transfer=transfer,
                   fit=FitSpec(cfg.cv.inner_val_fraction, protocol.early_stopping, protocol.threshold,
                               protocol.alarm_specificity),
                   design=CVDesign(protocol.split, cfg.cv.folds, cfg.cv.repeats, cfg.seed, cfg.cv.n_jobs,
                                   cfg.cv.explain_rows),
                   log_models=cfg.logger.log_models)


def build_estimator(cfg: DictConfig, fill_values: dict, covid: Cohort | None = None):
    """The configured model, unfitted (`run_spec(cfg, fill_values).build`); the COVID-19 cohort
    is loaded when `transfer=covid` needs it and none is given."""
    if covid is None and cfg.transfer.name == "covid":
        covid = load_covid_for(cfg)
    return run_spec(cfg, fill_values).build(covid)


def check_model(spec: RunSpec, features: tuple[str, ...], covid: Cohort | None = None) -> None:
    """Build the spec's model once (a network with its optimizer) on the run's input columns
    (`features`: the factors, then any history columns) before any fold is trained: an option it
    cannot work with is a one-line ConfigError naming it."""
    spec.build(covid).check(features)


def fit_rows(spec: RunSpec, data: HorizonData, rows: np.ndarray, seed: int, covid: Cohort | None = None) -> Fitted:
    """The spec's model fitted on `rows` (a CV fold's training rows, or every row for the
    platform) by `prcrs.fitting.fit_fold`: the protocol's inner split (seeded by `seed`), early
    stopping and threshold. No other row is read."""
    fit = spec.fit
    return fit_fold(spec.build(covid), data.X, data.y, data.grade_today, data.grade_target, data.patient, rows,
                    seed=seed, val_fraction=fit.val_fraction, early_stopping=fit.early_stopping,
                    threshold=fit.threshold)


def _fit_and_score(spec: RunSpec, data: HorizonData, k: int, fold, covid: Cohort | None):
    """Fit on fold `k`'s training rows (`fit_rows`, seeded by seed + k), score on its test rows."""
    seed = spec.design.seed + k
    fitted = fit_rows(spec, data, fold.train, seed, covid)
    model, val, threshold = fitted.model, fitted.val, fitted.threshold
    proba = severe_probability(model, data.X.iloc[fold.test])
    metrics = fold_metrics(data.y[fold.test], proba, threshold)
    metrics["threshold"] = threshold
    metrics["alarm_threshold"] = float("nan")
    if val is not None:  # the search score and the alarm threshold: validation rows only
        metrics["val_auroc"] = fold_metrics(data.y[val], fitted.val_proba, threshold)["auroc"]
        metrics["alarm_threshold"] = specificity_threshold(data.y[val], fitted.val_proba, spec.fit.alarm_specificity)
    metrics.update(_importance(spec.design.explain_rows, data, model, fold, seed))
    if getattr(model, "best_epoch_", None) is not None:
        metrics["best_epoch"] = model.best_epoch_
    if getattr(model, "trainer_", None) is not None:
        metrics["epochs"] = model.trainer_.current_epoch
    return model, proba, metrics


def _importance(explain_rows: int, data: HorizonData, model, fold, seed: int) -> dict[str, float]:
    """Mean |contribution| of each factor (`prcrs.explain.contributions`, against the training
    rows' reference day) over up to `explain_rows` test rows drawn with `seed`:
    `importance_<factor>`, in units of P(severe)."""
    n = min(int(explain_rows), len(fold.test))
    if n == 0:
        return {}
    rows = np.sort(np.random.default_rng(seed).choice(fold.test, n, replace=False))
    values = explain.contributions(partial(severe_probability, model), data.X.iloc[rows],
                                   explain.reference_row(model, data.X.iloc[fold.train]), seed=seed)
    return {f"importance_{factor.replace('@', '_at_')}": float(v) for factor, v in values.abs().mean().items()}


@dataclass
class CVResult:
    folds: list[dict] = field(default_factory=list)  # one dict of metrics (+ threshold, ...) per fold
    oof: pd.DataFrame | None = None  # out-of-fold predictions
    n_parameters: int | None = None

    def summary(self) -> dict[str, float]:
        """cv_results_-style: split{k}_test_<m>, mean_test_<m>, std_test_<m> (over folds); and
        pooled_test_auroc, pooled_test_auprc: over the pooled out-of-fold rows, as the ROC and PR
        figures draw them (not the mean over folds: pooling mixes the folds' score scales)."""
        out = {}
        for k, fold in enumerate(self.folds):
            out.update({f"split{k}_test_{m}": fold[m] for m in METRICS})
        for m in METRICS:
            values = np.array([f[m] for f in self.folds], float)
            out[f"mean_test_{m}"] = float(np.nanmean(values))
            out[f"std_test_{m}"] = float(np.nanstd(values))
        out["diverged_folds"] = float(sum(f.get("diverged", 0) for f in self.folds))
        out["n_finite_folds"] = float(np.isfinite([f["auroc"] for f in self.folds]).sum())  # what the means rest on
        if self.oof is not None:
            pooled = self.oof.dropna(subset=["probability"])  # every fold diverged: none left
            out["pooled_test_auroc"] = auroc(pooled["label"], pooled["probability"])
            out["pooled_test_auprc"] = auprc(pooled["label"], pooled["probability"])
        for key in dict.fromkeys(k for f in self.folds for k in f if k.startswith("importance_")):
            out[f"mean_{key}"] = float(np.nanmean([f.get(key, np.nan) for f in self.folds]))
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
    curves: list[tuple[int, float, float]] | None = None  # a network's (epoch, train loss, validation loss)


def _run_fold(spec: RunSpec, data: HorizonData, k: int, fold, n_folds: int, covid: Cohort | None) -> FoldOutput:
    """Fit and score fold `k`; a diverged fold is recorded with NaN metrics."""
    start = time.perf_counter()
    try:
        model, proba, metrics = _fit_and_score(spec, data, k, fold, covid)
    except TrainingError as exc:  # recorded, not hidden: the fold's metrics are NaN and say why
        log.warning(f"fold {k + 1}/{n_folds}: {exc}")
        model, proba = None, np.full(len(fold.test), np.nan)
        metrics = {**dict.fromkeys(METRICS, float("nan")), "threshold": float("nan"), "alarm_threshold": float("nan"),
                   "diverged": 1.0}
    metrics.update(seconds=time.perf_counter() - start, test_rows=len(fold.test))
    out = FoldOutput(proba, metrics, n_parameters=getattr(model, "n_parameters", None),
                     curves=getattr(model, "loss_history_", None))
    if model is not None and spec.log_models:
        import io

        import joblib

        buffer = io.BytesIO()
        joblib.dump(model, buffer)
        out.model = buffer.getvalue()
    return out


def cross_validate(spec: RunSpec, data: HorizonData, covid: Cohort | None = None, on_fold=None) -> CVResult:
    """Fit and score the spec's model on every fold; thresholds never see the test fold.

    Folds run `design.n_jobs` at a time in worker processes (each with `trainer.threads` torch
    threads), so the results do not depend on it; inside a worker of a parallel sweep they run
    one by one. `on_fold(k, n, output)` is called in this process, in fold order.
    """
    design = spec.design
    folds = make_folds(design.split, data.y, data.grade_target, data.patient, design.folds, design.repeats,
                       design.seed)
    if spec.transfer is not None:  # pretrain once, here, before the workers read the cache
        estimator = spec.build(covid)
        try:
            estimator.init_from(estimator)
        except TrainingError as exc:  # each fold records it as the reason it diverged
            log.warning(f"{exc}: every fold will be recorded as diverged")
    jobs = [(spec, data, k, fold, len(folds), covid) for k, fold in enumerate(folds)]
    result, oof = CVResult(), []
    try:
        outputs = workers.map_ordered(_run_fold, jobs, fold_jobs(design.n_jobs, len(folds)))
        for k, (fold, out) in enumerate(zip(folds, outputs, strict=True)):
            result.folds.append(out.metrics)
            result.n_parameters = out.n_parameters or result.n_parameters
            oof.append(pd.DataFrame({"repeat": fold.repeat, "fold": fold.fold, "patient": data.patient[fold.test],
                                     "day": data.day[fold.test], "horizon": data.horizon,
                                     "label": data.y[fold.test], "probability": out.proba,
                                     "threshold": out.metrics["threshold"],
                                     "alarm_threshold": out.metrics["alarm_threshold"],
                                     "severe_today": (data.grade_today[fold.test] >= schema.SEVERE_GRADE).astype(int)}))
            if on_fold is not None:
                on_fold(k, len(folds), out)
    except BrokenProcessPool:
        raise TrainingError("a fold worker process died (out of memory or killed); lower cv.n_jobs") from None
    result.oof = pd.concat(oof, ignore_index=True)
    return result


def fold_jobs(n_jobs: int, n_folds: int) -> int:
    """Folds trained at once: `n_jobs` (cv.n_jobs), at most one per fold, and 1 inside a parallel
    sweep's worker (no nested pools)."""
    from joblib.parallel import get_active_backend

    if get_active_backend()[0].nesting_level > 0:
        return 1
    return max(1, min(int(n_jobs), n_folds))


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
