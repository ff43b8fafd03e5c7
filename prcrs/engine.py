"""Cross-validation of one `RunSpec` (a config read once by `prcrs.run_config`): data in, a
`CVResult` out, nothing logged. It reads no config.

`prcrs.evaluate` adds the store (resume, MLflow logging through `prcrs.tracking.cv_logging`); this
module knows nothing of it.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from hydra.utils import instantiate

from prcrs import schema, workers
from prcrs.clinical import explain
from prcrs.clinical.alarms import specificity_threshold
from prcrs.data.cohort import Cohort
from prcrs.data.targets import HorizonData
from prcrs.errors import ConfigError, TrainingError
from prcrs.fitting import Fitted, fit_fold, severe_probability
from prcrs.metrics import METRICS, auprc, auroc, fold_metrics
from prcrs.preprocessing import FoldPreprocessor
from prcrs.splits import make_folds

log = logging.getLogger("prcrs")


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
    group: str  # cv.group: "patient" (folds of `split`) or "site" (one fold per site)
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
        metrics["skipped_steps"] = model.skipped_steps_  # steps left out for a non-finite gradient
    return model, proba, metrics


def _importance(explain_rows: int, data: HorizonData, model, fold, seed: int) -> dict[str, float]:
    """Mean |contribution| of each factor (`prcrs.clinical.explain.contributions`, against the training
    rows' reference day) over up to `explain_rows` test rows drawn with `seed`:
    `importance_<factor>`, in units of P(severe)."""
    n = min(int(explain_rows), len(fold.test))
    if n == 0:
        return {}
    rows = np.sort(np.random.default_rng(seed).choice(fold.test, n, replace=False))
    values = explain.contributions(model.column_encoding(data.X.columns), data.X.iloc[rows],
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
        if any("skipped_steps" in f for f in self.folds):  # a network's: steps left out for a non-finite gradient
            out["skipped_steps"] = float(sum(f.get("skipped_steps", 0) for f in self.folds))
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
    if design.group == "site" and data.site is None:
        raise ConfigError("cv.group=site needs a cohort with a site column (a site export with one)")
    folds = make_folds(design.split, data.y, data.grade_target, data.patient, design.folds, design.repeats,
                       design.seed, data.site if design.group == "site" else None)
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
