"""External validation of the served release on a site's labelled export (`prcrs validate`).

Every patient-day is predicted as `prcrs predict` predicts it (the same reading rules, the same
routing to a factor combination, the same history), at the release's horizons among the same day
and 1-3 days ahead, and paired with the CRS grade recorded on the day predicted. Nothing is
refitted: the numbers say how the release does at this site. Per horizon: AUROC and AUPRC with
patient-bootstrap intervals, calibration-in-the-large and slope (with intervals) and a
reliability diagram, net benefit against treat-all and the bedside scores (cross-validated on
the same file, by patient, which favours them), warning time, the rule-out band's coverage, and
what could not be used and why. The report (`external_validation.md`, figures) follows TRIPOD+AI's
items for external validation; an MLflow run (`role=external_validation`) keeps its numbers with
the export's content id, never its rows, ids or file name.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from prcrs import schema
from prcrs.clinical import alarms, calibration, decision
from prcrs.clinical.conformal import NOT_RULED_OUT
from prcrs.data.exports import DAY, GRADE_COLUMN, PATIENT, PatientDays
from prcrs.errors import DataError
from prcrs.metrics import auprc, auroc, weighted_auprc, weighted_auroc
from prcrs.report.stats import PatientBootstrap
from prcrs.serving.platform import Platform

log = logging.getLogger("prcrs")
HORIZONS = (0, 1, 2, 3)  # the same day and 1-3 days ahead, where the release has a model
N_BOOT = 500
STUDY = "external_validation"
FIG7_PATIENTS = 12  # patients drawn in the Fig. 7 panel


@dataclass
class SitePredictions:
    """Each patient-day x horizon of an export, predicted as `prcrs predict` does: `frame` has
    patient (numbered 1, 2, ... by first appearance: no id of the export), day, horizon,
    combination, probability (the model score), risk (the calibrated probability), band,
    alarm_risk (the release's alarm threshold, NaN if it has none), label (1: CRS grade >= 3 on
    the day predicted), severe_today; only rows with a prediction and a grade that day. `unusable`:
    per horizon, reason -> patient-days left out."""

    frame: pd.DataFrame
    unusable: dict[int, dict[str, int]]
    horizons: tuple[int, ...]


def site_predictions(export: PatientDays, platform: Platform, horizons=HORIZONS) -> SitePredictions:
    """Predict every patient-day of `export` at the release's `horizons` and pair each with its outcome."""
    if not export.graded:
        raise DataError(f"{export.source}: validation needs the CRS grade of each day ('{GRADE_COLUMN}' or the "
                        "mapping's `grade`)")
    horizons = tuple(h for h in horizons if h in platform.horizons)
    if not horizons:
        raise DataError(f"the release has no model at horizons {', '.join(map(str, HORIZONS))}")
    table = export.table
    number = pd.Series(pd.factorize(table[PATIENT])[0] + 1, index=table.index)
    grade = dict(zip(zip(number, table[DAY].astype(int), strict=True), table[GRADE_COLUMN], strict=True))
    predicted, _ = platform.predict_table(table, horizons, explain_rows=False, rounded=False)
    alarm = {key: m.info.get("alarm_risk", np.nan) for key, m in platform.models.items()}
    rows, unusable = [], {h: {} for h in horizons}
    for record in predicted.to_dict("records"):
        h, who, day = int(record["horizon"]), int(number[record["row"]]), int(table.at[record["row"], DAY])
        target = grade.get((who, day + h), np.nan)
        reason = _reason(record["error"]) if isinstance(record["error"], str) else \
            "no CRS grade on the day predicted" if not np.isfinite(target) else None
        if reason:
            unusable[h][reason] = unusable[h].get(reason, 0) + 1
            continue
        today = grade.get((who, day), np.nan)
        rows.append({"patient": who, "day": day, "horizon": h, "combination": record["combination"],
                     "probability": record["probability"], "risk": record["calibrated_probability"],
                     "band": record["risk_band"], "alarm_risk": alarm.get((record["combination"], h), np.nan),
                     "label": int(target >= schema.SEVERE_GRADE),
                     "severe_today": int(np.isfinite(today) and today >= schema.SEVERE_GRADE)})
    return SitePredictions(pd.DataFrame(rows), unusable, horizons)


def _reason(error: str) -> str:
    """A row's error as a reason shared by rows ('no model for combination 23 at horizon 1' stays
    itself; a cell's message loses its value)."""
    if error.startswith("nothing usable"):
        return "no factor combination available (a group needs half of its factors)"
    return re.sub(r"\d+(\.\d+)?", "#", error) if not error.startswith("no model") else error


@dataclass
class HorizonResult:
    """The validation numbers of one horizon (see the module)."""

    horizon: int
    rows: int
    patients: int
    severe_rows: int
    metrics: dict[str, float]  # auroc, auprc, citl, slope, brier, ece, oe, band_coverage and *_low/*_high
    net_benefit: pd.DataFrame  # threshold x (model, treat all, treat none, bedside scores), on the same rows
    warning: dict[str, float] = field(default_factory=dict)  # alarms.warning_summary, {} without alarm thresholds
    bedside_notes: list[str] = field(default_factory=list)


def horizon_result(frame: pd.DataFrame, horizon: int, bedside: dict[str, pd.DataFrame], n_boot: int = N_BOOT,
                   seed: int = 0) -> HorizonResult:
    """The numbers of `frame`'s rows at `horizon` (`SitePredictions.frame`); `bedside`: name ->
    its cross-validated rows on the same file (patient, day, probability)."""
    rows = frame[frame["horizon"] == horizon].reset_index(drop=True)
    y, p, g = rows["label"].to_numpy(int), rows["risk"].to_numpy(float), rows["patient"].to_numpy()
    metrics = {"auroc": auroc(y, p), "auprc": auprc(y, p), **calibration.calibration_stats(p, y)}
    lp, boot = calibration.logit(p), PatientBootstrap.of(g, n_boot, seed)
    statistics = {"auroc": lambda w: weighted_auroc(y, p, w), "auprc": lambda w: weighted_auprc(y, p, w),
                  "citl": lambda w: calibration.logistic_fit(lp, y, w, slope=False)[0],
                  "slope": lambda w: calibration.logistic_fit(lp, y, w)[1]}
    for name, statistic in statistics.items():
        metrics[f"{name}_low"], metrics[f"{name}_high"] = boot.interval(statistic)
    severe = rows["label"] == 1
    metrics["band_coverage"] = float((rows.loc[severe, "band"] == NOT_RULED_OUT).mean()) if severe.any() else np.nan
    thresholds = np.asarray(decision.REPORTED)
    common = rows[["patient", "day"]]
    scores = {"model": rows.assign(score=p)}
    notes = []
    for name, oof in bedside.items():
        merged = rows.merge(oof.rename(columns={"probability": "score"})[["patient", "day", "score"]],
                            on=["patient", "day"], how="inner")
        common = common.merge(merged[["patient", "day"]], on=["patient", "day"])
        scores[name] = merged
    if len(common) < len(rows):
        notes.append(f"net benefit on the {len(common)} of {len(rows)} patient-days every score could be "
                     "computed for")
    table = {}
    labels = None
    for name, scored in scores.items():
        on = scored.merge(common, on=["patient", "day"])
        labels = on["label"].to_numpy(int)
        table[name] = decision.net_benefit(labels, on["score"].to_numpy(float), thresholds)
    table["treat all"] = decision.treat_all(labels, thresholds)
    table["treat none"] = np.zeros(len(thresholds))
    net = pd.DataFrame(table, index=pd.Index(thresholds, name="threshold"))
    warning = {}
    if rows["alarm_risk"].notna().all() and len(rows):
        outcomes = alarms.patient_outcomes(rows.assign(probability=rows["risk"], alarm_threshold=rows["alarm_risk"]))
        warning = alarms.warning_summary(outcomes)
    return HorizonResult(horizon, len(rows), int(rows["patient"].nunique()), int(y.sum()), metrics, net, warning,
                         notes)


def bedside_predictions(export: PatientDays, horizon: int, seed: int = 0) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The bedside scores of the model catalogue (family `bedside`: m-EASIX, the cytokine model)
    cross-validated on the export itself by patient (5 folds, the honest protocol): name -> rows
    (patient numbered as in `site_predictions`, day, probability). A score the file lacks the
    labs or the severe days for is left out, said in a note."""
    from prcrs import engine, run_config
    from prcrs.data.targets import make_horizon
    from prcrs.errors import ConfigError, TrainingError
    from prcrs.models import catalogue

    cohort = export.cohort()
    out, notes = {}, []
    for name in catalogue.names(family="bedside"):
        needs = run_config.build_estimator(run_config.compose_config([f"model={name}"]), {}).NEEDS
        absent = [schema.BY_KEY[k].name for k in needs if k not in export.factors]
        if absent:
            notes.append(f"{catalogue.display(name)} not computed: the export has no {', '.join(absent)}")
            continue
        cfg = run_config.compose_config([f"model={name}", "protocol=honest", f"horizon={horizon}", f"seed={seed}",
                                         "cv.n_jobs=1"])
        try:
            spec = run_config.run_spec(cfg, cohort.fill_values)
            data = make_horizon(cohort, horizon, run_config.features_of(cfg))
            spec.build().check(tuple(data.X.columns))
            oof = engine.cross_validate(spec, data).oof
        except (ConfigError, DataError, TrainingError) as exc:
            notes.append(f"{catalogue.display(name)} not computed at horizon {horizon}: {exc}")
            continue
        oof["patient"] = oof["patient"] + 1  # numbered from 1, as the release's rows
        out[catalogue.display(name)] = oof[["patient", "day", "probability"]]
    return out, notes


@dataclass
class Validation:
    """What `validate` found: the export, the release, the predictions and each horizon's numbers."""

    release: str
    developed_on: str  # the data the release was trained on: real or synthetic
    site: str | None
    content_id: str  # of the export's patient-days, without its patient ids
    form: str
    synthetic: bool
    patients: int
    patient_days: int
    notes: list[str]
    predictions: SitePredictions
    results: list[HorizonResult]
    n_boot: int
    fig7_patients: list[int] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow: h<horizon>_<metric>, h<horizon>_warning_<...>, h<horizon>_rows."""
        out = {}
        for r in self.results:
            out.update({f"h{r.horizon}_{k}": float(v) for k, v in r.metrics.items() if np.isfinite(v)})
            out.update({f"h{r.horizon}_warning_{k}": float(v) for k, v in r.warning.items() if np.isfinite(v)})
            out.update({f"h{r.horizon}_rows": float(r.rows), f"h{r.horizon}_severe_rows": float(r.severe_rows)})
        return out


def content_id(export: PatientDays) -> str:
    """A short hash of the export's patient-days with patients numbered, not named: two files
    with the same values share it; it reveals no id and no value."""
    import hashlib

    numbered = export.table.assign(**{PATIENT: pd.factorize(export.table[PATIENT])[0]})
    return hashlib.sha1(pd.util.hash_pandas_object(numbered, index=False).to_numpy().tobytes()).hexdigest()[:12]


def validate(export: PatientDays, platform: Platform, out: Path, n_boot: int = N_BOOT, seed: int = 0,
             tracking_uri: str | None = None, bedside: bool = True) -> Validation:
    """Validate the release (`platform`) on `export`, write the report into `out` and log the
    run (see the module)."""
    from prcrs.report import external

    predictions = site_predictions(export, platform)
    if predictions.frame.empty or predictions.frame["label"].nunique() < 2:
        raise DataError(f"{export.source}: no patient-day could be predicted and paired with a grade, or every one "
                        "has the same outcome: nothing to validate")
    results = []
    for h in predictions.horizons:
        if not (predictions.frame["horizon"] == h).any():  # every patient-day of it went unused (said there)
            continue
        scores, notes = bedside_predictions(export, h, seed) if bedside else ({}, [])
        result = horizon_result(predictions.frame, h, scores, n_boot, seed)
        result.bedside_notes = notes + result.bedside_notes
        results.append(result)
    graded = export.table[export.table[GRADE_COLUMN].notna()]
    validation = Validation(platform.release, "/".join(sorted(platform.data_sources)), export.site,
                            content_id(export), export.form, export.synthetic,
                            int(graded[PATIENT].nunique()), len(graded), list(export.notes), predictions, results,
                            n_boot)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / name for name in external.FILES]
    for r in results:
        rows = predictions.frame[predictions.frame["horizon"] == r.horizon]
        written += [out / f"reliability_h{r.horizon}.png", out / f"decision_h{r.horizon}.png"]
        external.reliability_figure(rows, r.horizon, written[-2])
        external.decision_figure(r.net_benefit, r.horizon, written[-1])
    shown = min((r.horizon for r in results if r.horizon >= 1), default=results[0].horizon)
    grades = pd.DataFrame({"patient": pd.factorize(export.table[PATIENT])[0] + 1, "day": export.table[DAY],
                           "grade": export.table[GRADE_COLUMN]}).dropna()
    validation.fig7_patients = external.fig7_figure(predictions.frame, grades, shown, out / external.FILES[1])
    (out / external.FILES[0]).write_text(external.markdown(validation, out))
    _log_run(validation, written, tracking_uri)
    return validation


def _log_run(validation: Validation, files: list[Path], tracking_uri: str | None) -> str:
    """The MLflow run of a validation: tags (role, release, site, content id, data kind), the
    numbers, the report's `files` (only those: nothing else of the report folder); no row, id or
    file name."""
    import mlflow

    from prcrs.tracking import store

    experiment_id = store.setup(STUDY, tracking_uri)
    tags = {"role": "external_validation", "release": validation.release, "site": validation.site or "unnamed",
            "data_content": validation.content_id, "data_form": validation.form,
            "data_source": "synthetic" if validation.synthetic else "real", "developed_on": validation.developed_on,
            "git_sha": store.git_sha()}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"validation {validation.release} at "
                                                                f"{validation.site or 'a site'}", tags=tags) as run:
        mlflow.log_params({"horizons": ",".join(map(str, validation.predictions.horizons)),
                           "n_boot": validation.n_boot, "patients": validation.patients,
                           "patient_days": validation.patient_days})
        mlflow.log_metrics(validation.metrics())
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="report")
    return run.info.run_id
