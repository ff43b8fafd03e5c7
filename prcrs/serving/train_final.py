"""`prcrs train-final`: the platform's models, one per factor combination and horizon.

For each (combination, horizon): the honest-protocol cross-validation through the engine
(logged to MLflow under the study `platform`, resumable), calibrators fitted on its
patient-grouped out-of-fold predictions, then the same config fitted on every row (early
stopping on an inner patient-grouped split) and registered as a pyfunc model.

The models of one call are one **release** (`registry.Release`): every model is trained first,
then each is registered with the release's id, and last a release run records them all
(`registry.record_release`). `predict`, `serve` and the pyfunc serve only a release so recorded:
a `train-final` stopped half-way leaves the previous release in service.

The config is, for each horizon, that of the best honest run with all factors among the finished
runs on the same data in the MLflow store at that horizon (see `best_honest_config`), unless
`model=` is given; with no such run, the config default (PrCRS).
"""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import DictConfig

from prcrs import engine, run_config, schema
from prcrs.clinical import calibration, explain
from prcrs.clinical.alarms import specificity_threshold
from prcrs.clinical.conformal import BAND_CONFIDENCE, RiskBand
from prcrs.data.cohort import Cohort
from prcrs.errors import ConfigError, PrcrsError
from prcrs.evaluate import evaluate
from prcrs.serving.platform import HORIZONS, CombinationModel
from prcrs.serving.registry import new_release_id, publish
from prcrs.tracking.results import cv_design, oof, parent_runs, platform_run

log = logging.getLogger("prcrs")
STUDY = "platform"


def best_honest_config(cohort: Cohort, design: str, tracking_uri: str | None = None,
                       horizon: int | None = None) -> dict | None:
    """The finished run on the same data (`cohort`'s content id) and CV design
    (`results.cv_design`) whose config the platform serves at `horizon` (`results.platform_run`):
    its model, history, mean test AUROC, horizon, overrides and study; None without one."""
    runs = parent_runs(None, tracking_uri)
    best = None if runs.empty else platform_run(
        runs[(runs["data_content"] == cohort.content_id) & (runs["design"] == design)], horizon)
    if best is None:
        return None
    # the run's own task, store and data are not the platform's: train-final's overrides say those
    dropped = ("factors=", "horizon=", "study=", "protocol=", "hydra", "logger.", "model=", "data=", "data.")
    overrides = [o for o in best["overrides"] if not o.lstrip("+~").startswith(dropped)]
    return {"model": best["model"], "history": best["history"], "auroc": float(best["mean_test_auroc"]),
            "horizon": int(best["horizon"]), "overrides": [*overrides, f"model={best['model']}"],
            "study": best["study"]}


def _chosen_config(cohort: Cohort, base: DictConfig, horizon: int) -> list[str]:
    """The overrides of the best honest config for `horizon` in the store (`best_honest_config`),
    said in the log; [] (the config default) when the store has none."""
    design = cv_design(base.cv.folds, base.cv.repeats, base.seed)
    best = best_honest_config(cohort, design, base.logger.tracking_uri, horizon)
    if best is None:
        log.info(f"horizon {horizon}: no finished honest run on this {cohort.data_source} data ({cohort.content_id}) "
                 f"with {design} in the store: model {base.model.name} (config default)")
        return []
    log.info(f"horizon {horizon}: model {best['model']} with history {best['history']}, best honest mean AUROC "
             f"{best['auroc']:.3f} at horizon {best['horizon']} (all factors, study {best['study']}); its config: "
             f"{' '.join(best['overrides'])}")
    return best["overrides"]


def fit_calibrators(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int = 0):
    """(paper conversion, name of the better standard calibrator, that calibrator, Brier scores,
    its patient-cross-fitted risks), all from out-of-fold predictions; the standard one is
    `calibration.choose_calibrator`'s."""
    best, converted, brier = calibration.choose_calibrator(scores, labels, groups, seed)
    fitted = calibration.CONVERSIONS[best]().fit(scores, labels)
    return calibration.WindowConversion().fit(scores, labels), best, fitted, brier, converted[best]


def train_one(cfg: DictConfig, cohort, overrides: list[str]) -> CombinationModel:
    """Cross-validate (or reuse the finished run), calibrate on its OOF, fit on all rows."""

    features = run_config.features_of(cfg)
    history = run_config.history_spec(cfg)
    if history.baseline:
        raise ConfigError(f"history={cfg.history.name} reads baseline covariates (age, dose, ...), which the platform "
                          "does not take: use a history of labs and days only (lags, days) or none")
    data = run_config.horizon_data(cfg, cohort)
    evaluation = evaluate(cfg, overrides)
    if evaluation.run_id is None or not evaluation.summary:
        raise PrcrsError(f"the honest CV of {cfg.model.name} (factors {cfg.factors}, horizon {cfg.horizon}) is being "
                         "run by another process now; rerun train-final once it has finished")
    predictions = oof(evaluation.run_id)
    paper, name, calibrator, brier, risks = fit_calibrators(predictions["probability"].to_numpy(),
                                                            predictions["label"].to_numpy(int),
                                                            predictions["patient"].to_numpy(), cfg.seed)
    band = RiskBand(BAND_CONFIDENCE).fit(predictions["probability"].to_numpy(), predictions["label"].to_numpy(int))
    spec = run_config.run_spec(cfg, data.fill_values)
    estimator = engine.fit_rows(spec, data, np.arange(len(data)), cfg.seed, run_config.load_covid_for(cfg)).model
    X = cohort.frame[list(schema.FEATURE_KEYS)]
    masker = estimator.preprocessor_.masker_  # the page's example: medians of what the model reads
    medians = (X if masker is None else masker.transform(X)).median().dropna().to_dict()
    reference = explain.reference_row(estimator, data.X).to_dict()
    estimator.preprocessor_ = estimator.preprocessor_.measured()  # a new patient's values are measurements
    metrics = evaluation.summary
    info = {"model": cfg.model.name, "history": cfg.history.name, "cv_run_id": evaluation.run_id,
            "data_source": cohort.data_source, "data_content": cohort.content_id,
            "rows": len(data), "severe_rows": int(data.y.sum()), "mean_test_auroc": metrics["mean_test_auroc"],
            "mean_test_auprc": metrics["mean_test_auprc"], **{f"brier_{k}": v for k, v in brier.items()}}
    info["risk_band_confidence"] = BAND_CONFIDENCE
    info["patients"] = cohort.n_patients
    # the alarm of warning time on the risk scale: 90 % of the out-of-fold days not severe stay below it
    info["alarm_risk"] = specificity_threshold(predictions["label"].to_numpy(int), risks,
                                               cfg.protocol.alarm_specificity)
    return CombinationModel(str(cfg.factors), int(cfg.horizon), features, estimator, paper, name, calibrator,
                            medians, info, history, reference, band)


def train_final(overrides: list[str], horizons=HORIZONS, combinations=None,
                tracking_uri: str | None = None) -> tuple[str, list[tuple[str, str, CombinationModel]]]:
    """Train, calibrate and register every combination x horizon as one release; returns (the
    release id, [(name, version, model)])."""

    overrides = list(overrides)
    if not any(o.startswith("study=") for o in overrides):
        overrides.append(f"study={STUDY}")
    if tracking_uri:
        overrides.append(f"logger.tracking_uri={tracking_uri}")
    base = run_config.compose_config(overrides)
    if base.protocol.name != "honest":
        raise ConfigError("train-final fits the platform under protocol=honest only (the paper protocol leaks)")
    cohort = run_config.load_cart_for(base)
    if combinations is None and not cohort.label_imputed:  # a site's export: the combinations its labs allow
        from prcrs.data.reading import cohort_combinations

        combinations = cohort_combinations(cohort.frame[list(schema.FEATURE_KEYS)])
        if not combinations:
            raise ConfigError("no factor combination is available on half of the site's patient-days")
        log.info(f"combinations {', '.join(combinations)}: those at least half of the site's patient-days can use")
    release = new_release_id()
    trained = []  # every model first: nothing is registered until all are trained
    for h in horizons:
        chosen = overrides if any(o.startswith("model=") for o in overrides) else \
            _chosen_config(cohort, base, h) + overrides
        for code in combinations or schema.COMBINATIONS:
            run_overrides = [*chosen, f"factors={code}", f"horizon={h}"]
            cfg = run_config.compose_config(run_overrides)
            model = train_one(cfg, cohort, run_overrides)
            model.info["release"] = release
            trained.append((cfg, model))
    models = [model for _, model in trained]
    members = publish(models, release, base.study, cohort.data_source, base.logger.tracking_uri,
                      run_tags=lambda m: {"model": m.info["model"], "history": m.info["history"], "protocol": "honest"},
                      about={"site": cohort.site} if cohort.site else None)
    out = []
    for (name, version), model in zip(members, models, strict=True):
        log.info(f"{name} v{version}: {model.info['model']}, CV AUROC {model.info['mean_test_auroc']:.3f}, "
                 f"calibrator {model.calibrator_name} (Brier {model.info[f'brier_{model.calibrator_name}']:.4f}"
                 f" vs paper window {model.info['brier_paper_window']:.4f})")
        out.append((name, version, model))
    log.info(f"release {release}: {len(out)} model(s), now the one served")
    return release, out
