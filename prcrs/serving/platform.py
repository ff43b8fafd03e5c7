"""The prediction platform: one calibrated model per factor combination and horizon, and the
choice of combination per row.

A `CombinationModel` predicts P(severe CRS, grade >= 3, on day t + horizon) from day t's labs
(and, for a model trained with a `history`, the same patient's earlier days in the input, matched
by day since infusion) with three numbers per row: `probability` (the model's raw output), `calibrated_probability`
(the better-scoring standard calibrator, isotonic or Platt, fitted on patient-grouped
out-of-fold predictions) and `paper_probability` (the paper's windowed conversion of the same
out-of-fold predictions); a `risk_band` with a coverage guarantee (`prcrs.conformal`, fitted on the
same out-of-fold predictions); and the factors that pushed the calibrated probability up or down
against the reference day (`prcrs.explain`: the training rows' medians), in probability units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prcrs import explain, schema
from prcrs.conformal import RiskBand
from prcrs.data.cohort import segment_patients
from prcrs.data.history import HistorySpec, history_features
from prcrs.errors import DataError, PrcrsError
from prcrs.progress import Steps
from prcrs.serving.inputs import IGNORED, RowInput, check_row, model_frame, name_lookup, normal_name, resolve_columns

HORIZONS = (1, 2, 3)
OUTPUT_COLUMNS = ("row", "patient", "day", "horizon", "combination", "past_days", "calibrated_risk",
                  "calibrated_probability", "probability", "paper_probability", "risk_band", "reference_probability",
                  "top_factors", "warnings", "error", "model", "registered_model", "model_version", "cv_run_id",
                  "cv_auroc", "data_source", "data_content")
PROBABILITIES = ("calibrated_probability", "probability", "paper_probability", "reference_probability")
# What each number is, for every output (CSV notes, API schema, page).
MEANINGS = {
    "calibrated_risk": "the calibrated probability as shown on the page ('< 1 %' below 1 %): use this one",
    "calibrated_probability": "USE THIS: P(severe CRS, grade >= 3, on the day predicted), calibrated on out-of-fold "
                              "predictions of held-out patients (isotonic or Platt)",
    "probability": "the model's raw score: ranks days but is not a probability to act on",
    "paper_probability": "the paper's windowed conversion of the score (kept to reproduce the paper's platform)",
    "risk_band": "90 % conformal band from held-out patients: high, low, uncertain (both fit) or atypical",
    "reference_probability": "the calibrated probability of the reference day (training medians): top_factors are "
                             "contributions against it, in percentage points (pp)",
    "cv_auroc": "the model config's honest cross-validated AUROC, mean over folds",
}
TOP_FACTORS = 5  # contributions shown per prediction


def registered_name(combination: str, horizon: int) -> str:
    """Name of a platform model in the MLflow registry, e.g. prcrs-f1234-h1."""
    return f"prcrs-f{combination}-h{horizon}"


@dataclass
class CombinationModel:
    """A model fitted on all rows for one factor combination and horizon, with its calibrators."""

    combination: str
    horizon: int
    features: tuple[str, ...]
    estimator: object  # a fitted prcrs.models.estimators.CRSModel
    paper_conversion: object  # WindowConversion fitted on out-of-fold predictions
    calibrator_name: str  # "isotonic" or "platt": the lower cross-fitted Brier score
    calibrator: object
    medians: dict[str, float]  # training medians in schema units (the page's example)
    info: dict = field(default_factory=dict)  # model name, CV metrics, Brier scores, runs
    history: HistorySpec = HistorySpec()  # the patient's past it reads (none: day t alone)
    reference: dict[str, float] = field(default_factory=dict)  # the reference day of explanations, per input column
    band: RiskBand | None = None  # the conformal risk band, fitted on out-of-fold predictions

    def fill_value_inputs(self, values: dict[str, float]) -> list[str]:
        """Keys of the values that equal one of the training sheet's label-imputation fill values:
        the model reads them as not measured, as it did in training (`prcrs.data.fingerprint`)."""
        fills = self._fill_values()
        return [k for k, v in values.items() if k in self.features and v in fills.get(k, ())]

    def _fill_values(self) -> dict[str, tuple[float, ...]]:
        masker = getattr(getattr(self.estimator, "preprocessor_", None), "masker_", None)
        return masker.fill_values_ if masker is not None else {}

    def inputs(self, X: pd.DataFrame, patient=None, day=None) -> pd.DataFrame:
        """The estimator's input: day t's factors, then the history columns computed from the
        rows of the same `patient` on earlier `day`s (fill values masked first, as in training)."""
        X = X[list(self.features)].reset_index(drop=True)
        if not self.history.any:
            return X
        if patient is None or day is None:
            raise DataError("this model reads a patient's earlier days: give each row a patient and a 'Relative date'")
        frame = pd.concat([pd.DataFrame({"patient": np.asarray(patient), "day": np.asarray(day)}), X], axis=1)
        masked = self._fill_values() if self.estimator.preprocessor.unimpute == "sheet" else None
        return pd.concat([X, history_features(frame, self.features, self.history, masked)], axis=1)

    def past_days(self, patient, day) -> np.ndarray:
        """Per row, how many of the same patient's earlier days its history read: those within
        the lag window, or every earlier day when it reads running extremes."""
        if not self.history.any:
            return np.zeros(len(day), int)
        patient, day = np.asarray(patient), np.asarray(day, float)
        reach = np.inf if self.history.extremes else max(self.history.window, 1 if self.history.changes else 0)
        return np.array([int(np.sum((patient == p) & (day < t) & (day >= t - reach))) for p, t in zip(patient, day,
                                                                                                     strict=True)])

    def predict(self, X: pd.DataFrame, patient=None, day=None) -> pd.DataFrame:
        """X: (n, features) in schema units, NaN where missing (with `patient` and `day` per row
        for a history model) -> (n, 4): the three probabilities and the risk band."""
        raw = np.asarray(self.estimator.predict_proba(self.inputs(X, patient, day)), float)
        return pd.DataFrame({"probability": raw, "calibrated_probability": self.calibrator.predict(raw),
                             "paper_probability": self.paper_conversion.predict(raw),
                             "risk_band": self.band.predict(raw) if self.band is not None else "not fitted"})

    def calibrated(self, inputs: pd.DataFrame) -> np.ndarray:
        """The calibrated probability of estimator inputs (`inputs`' frame)."""
        return self.calibrator.predict(np.asarray(self.estimator.predict_proba(inputs), float))

    def explain(self, X: pd.DataFrame, patient=None, day=None, rows=None) -> tuple[pd.DataFrame, float]:
        """Each factor's contribution to the calibrated probability of `rows` of X (default all),
        against the reference day (`prcrs.explain.contributions`; the factors the platform never
        reads are missing there too, as in every input), and the reference day's calibrated
        probability: a row's contributions sum to its probability minus it."""
        inputs = self.inputs(X, patient, day)
        inputs = inputs if rows is None else inputs.iloc[rows]
        reference = pd.Series(self.reference, dtype=float).reindex(inputs.columns)
        reference[[c for c in inputs.columns if explain.factor_of(c) in IGNORED]] = np.nan  # never read: missing
        return (explain.contributions(self.calibrated, inputs, reference),
                float(self.calibrated(reference.to_frame().T)[0]))


def shown_risk(probability: float | None) -> str | None:
    """A probability as a clinician reads it: '12 %', '2.4 %', never a bare 0: '< 1 %'."""
    if probability is None or not np.isfinite(probability):
        return None
    if probability < 0.01:
        return "< 1 %"
    if probability > 0.99:
        return "> 99 %"
    return f"{100 * probability:.0f} %" if probability >= 0.1 else f"{100 * probability:.1f} %"


def provenance(model: CombinationModel) -> dict:
    """Where a model came from: its data (real or synthetic, content id), the model and history,
    its registered name, version and CV run, and the honest CV AUROC (mean over folds) it earned."""
    info = model.info
    history = info.get("history", "none")
    return {"model": info.get("model", "?") + ("" if history in ("none", None) else f" + {history}"),
            "registered_model": registered_name(model.combination, model.horizon),
            "model_version": info.get("registered_version"), "cv_run_id": info.get("cv_run_id"),
            "cv_auroc": info.get("mean_test_auroc"), "data_source": info.get("data_source", "unknown"),
            "data_content": info.get("data_content", "unknown")}


class Platform:
    """The six combinations x horizons; rows are routed to the best available combination."""

    def __init__(self, models: dict[tuple[str, int], CombinationModel]):
        if not models:
            raise PrcrsError("the platform has no model: run `prcrs train-final` first")
        self.models = models

    @property
    def horizons(self) -> tuple[int, ...]:
        return tuple(sorted({h for _, h in self.models}))

    def check_horizons(self, horizons) -> tuple[int, ...]:
        horizons = tuple(int(h) for h in horizons)
        bad = [h for h in horizons if h not in self.horizons]
        if bad:
            raise DataError(f"no model for horizon(s) {bad}; trained: {', '.join(map(str, self.horizons))}")
        return horizons

    @property
    def data_sources(self) -> set[str]:
        """The data the models were trained on: {'real'}, {'synthetic'} or both."""
        return {m.info.get("data_source", "unknown") for m in self.models.values()}

    @property
    def reads_history(self) -> bool:
        return any(m.history.any for m in self.models.values())

    def predict_rows(self, rows: list[RowInput], horizons, patient=None, day=None,
                     steps: Steps | None = None) -> list[list[dict]]:
        """Per row, one result dict per horizon (combination, probabilities and the calibrated
        risk as shown, risk band, top factors, past days used, the model's `provenance`,
        warnings, error). `patient` and `day` (one each per row) line up a patient's days for
        history models: a history reads every value a row gave (not only its combination's), and
        a row with a bad value is nobody's history."""
        horizons = self.check_horizons(horizons)
        out = [[{"horizon": h, "combination": r.combination, "past_days": 0, "warnings": list(r.warnings),
                 "error": r.error} for h in horizons] for r in rows]
        valid = [i for i, r in enumerate(rows) if r.error is None]
        parsed = [i for i, r in enumerate(rows) if not r.field_errors]  # every one is someone's history
        if self.reads_history and (patient is None or day is None):
            patient, day = np.arange(len(rows)), np.zeros(len(rows)) if day is None else day  # no past
            for i in valid:
                for res in out[i]:
                    res["warnings"].append("no patient and 'Relative date' given: no earlier day was read")
        for code in {r.combination for r in rows if r.error is None}:
            idx = [i for i, r in enumerate(rows) if r.error is None and r.combination == code]
            for j, h in enumerate(horizons):
                model = self.models.get((code, h))
                if model is None:
                    for i in idx:
                        out[i][j]["error"] = f"no model for combination {code} at horizon {h}"
                    continue
                if model.history.any:  # a row's past: every value read on earlier days, whatever they predicted with
                    who, when = np.asarray(patient)[parsed], np.asarray(day)[parsed]
                    X = pd.DataFrame([rows[i].read for i in parsed], columns=list(model.features), dtype=float)
                    keep = [parsed.index(i) for i in idx]
                    pred, used = model.predict(X, who, when).iloc[keep], model.past_days(who, when)[keep]
                    contributions, reference = model.explain(X, who, when, keep)
                else:
                    X, used = model_frame([rows[i] for i in idx], model.features), [0] * len(idx)
                    pred, (contributions, reference) = model.predict(X), model.explain(X)
                if steps is not None:
                    steps.done(f"combination {code}, {h} day(s) ahead: {len(idx)} row(s) predicted and explained")
                for i, values, n_past, (_, row) in zip(idx, pred.to_dict("records"), used, contributions.iterrows(),
                                                       strict=True):
                    out[i][j].update(values, past_days=int(n_past), reference_probability=reference,
                                     calibrated_risk=shown_risk(values["calibrated_probability"]),
                                     top_factors=explain.top_factors(row, rows[i].values, TOP_FACTORS),
                                     **provenance(model))
                    masked = model.fill_value_inputs(rows[i].values)
                    if masked:
                        names = ", ".join(f"{schema.BY_KEY[k].name} {rows[i].values[k]:g}" for k in masked)
                        out[i][j]["warnings"].append(f"read as not measured, as in training: {names} equal(s) a "
                                                     "label-imputation fill value of the training sheet")
        return out

    def predict_table(self, raw: pd.DataFrame, horizons=HORIZONS, strict: bool = False) -> tuple[pd.DataFrame,
                                                                                                  list[str]]:
        """A frame of input rows (any accepted column names, cells as read; the index is the file
        row) -> one output row per input row and horizon (OUTPUT_COLUMNS; probabilities to 4
        significant digits), and the unknown input columns (ignored). `strict`: see `inputs.read_values`."""
        mapping, ignored, unknown = resolve_columns(raw.columns)
        ids = {name_lookup().get(normal_name(c)): c for c in raw.columns}
        read = [*mapping, *ignored]
        rows = [check_row(cells, strict) for cells in raw[read].to_dict("records")] if mapping else \
            [RowInput(error="nothing usable: no factor column") for _ in range(len(raw))]
        patient, day = patients_and_days(raw, ids) if self.reads_history else (None, None)
        groups = len({r.combination for r in rows if r.error is None}) * len(horizons)
        results = self.predict_rows(rows, horizons, patient, day, Steps(groups, "predicting") if groups else None)
        records = []
        for (index, source), per_horizon in zip(raw.iterrows(), results, strict=True):
            patient = source[ids["patient"]] if "patient" in ids else None
            day = source[ids["day"]] if "day" in ids else None
            for res in per_horizon:
                records.append({"row": index, "patient": patient, "day": day, **res,
                                "top_factors": factors_text(res.get("top_factors")),
                                "warnings": "; ".join(res["warnings"])})
        table = pd.DataFrame(records).reindex(columns=list(OUTPUT_COLUMNS))
        table[list(PROBABILITIES)] = table[list(PROBABILITIES)].astype(float).map(
            lambda v: float(f"{v:.4g}") if np.isfinite(v) else v)  # 4 significant digits: 0.00108, 0.1116
        table["cv_auroc"] = table["cv_auroc"].astype(float).round(3)
        return table, unknown


def factors_text(top: list[dict] | None) -> str | None:
    """Top factors as one CSV cell: 'IL-6 +12.1 pp; CRP -3.0 pp' (percentage points of the
    calibrated probability against the reference day)."""
    if not top:
        return None
    return "; ".join(f"{t['name']} {100 * t['contribution']:+.1f} pp" for t in top)


def patients_and_days(raw: pd.DataFrame, ids: dict[str | None, str]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per input row, its patient and day since infusion, for history models: the patient column,
    or (as in the published sheet) a new patient wherever 'Relative date' does not increase;
    (None, None) without a 'Relative date' column. `ids`: project key -> input column."""
    if "day" not in ids:
        return None, None
    day = pd.to_numeric(raw[ids["day"]], errors="coerce").to_numpy(float)
    if np.isnan(day).any():
        bad = raw.index[np.isnan(day)][0]
        raise DataError(f"row {bad}: '{ids['day']}' must be a number of days since infusion on every row (history "
                        "models line up a patient's days by it)")
    if "patient" in ids:
        return raw[ids["patient"]].astype(str).to_numpy(), day
    return segment_patients(pd.Series(day, index=raw.index), "input"), day


def example_values(model: CombinationModel) -> dict[str, float]:
    """The page's example: the training medians of the full combination, rounded for display."""
    return {k: float(f"{v:.3g}") for k, v in model.medians.items() if k not in IGNORED}
