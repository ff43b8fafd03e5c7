"""The prediction platform: one calibrated model per factor combination and horizon, and the
choice of combination per row.

A `CombinationModel` predicts P(severe CRS, grade >= 3, on day t + horizon) from day t's labs
(and, for a model trained with a `history`, the same patient's earlier days in the input, matched
by day since infusion) with three numbers per row: `calibrated_probability`, the risk (the
better-scoring standard calibrator, isotonic or Platt, fitted on patient-grouped out-of-fold
predictions and never more extreme than their evidence: `calibration.EvidenceBounds`),
`probability` (the model's raw score) and `paper_probability` (the paper's windowed conversion);
a rule-out band with a coverage guarantee (`prcrs.clinical.conformal`); and the factors that pushed the
risk up or down against the reference day (`prcrs.clinical.explain`: the training rows' medians), in
probability units, with the factors not measured on the day as one player, "not measured".

A new patient's values are measurements: none is read as missing because it equals one of the
training sheet's label-imputation fill values (`train_final` serves the fitted preprocessing
without its fill-value mask, `FoldPreprocessor.measured`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from prcrs import schema
from prcrs.clinical import explain
from prcrs.clinical.conformal import MEANING as BAND_MEANING
from prcrs.clinical.conformal import RiskBand
from prcrs.data.cohort import segment_patients
from prcrs.data.history import HistorySpec
from prcrs.data.reading import (
    IGNORED,
    Columns,
    RowInput,
    check_row,
    model_frame,
    name_lookup,
    normal_name,
    read_columns,
)
from prcrs.errors import DataError, PrcrsError
from prcrs.fitting import severe_probability
from prcrs.models.threads import prediction_threads, usable_cpus
from prcrs.progress import Steps

HORIZONS = (1, 2, 3)
OUTPUT_COLUMNS = ("row", "patient", "day", "horizon", "predicted_day", "combination", "past_days",
                  "calibrated_probability", "calibrated_risk", "risk_band", "probability", "paper_probability",
                  "reference_probability", "top_factors", "warnings", "error", "release", "model", "registered_model",
                  "model_version", "cv_run_id", "cv_auroc", "data_source", "data_content")
PROBABILITIES = ("calibrated_probability", "probability", "paper_probability", "reference_probability")
# What each number is, for every output (CSV notes, API schema, page): one of them is the risk.
MEANINGS = {
    "calibrated_probability": "THE RISK: P(severe CRS, grade >= 3, on predicted_day), calibrated on out-of-fold "
                              "predictions of held-out patients and never more extreme than their evidence",
    "calibrated_risk": "the same risk as text, as the page shows it ('< 1 %' below 1 %)",
    "risk_band": f"'{BAND_MEANING['ruled out']}' or '{BAND_MEANING['not ruled out']}' (split-conformal, "
                 "from held-out patients)",
    "predicted_day": "the day the risk is for: day + horizon (days since infusion)",
    "probability": "the model's raw score: ranks days, not a probability; do not read it as a risk",
    "paper_probability": "the paper's windowed conversion of the score, kept to reproduce the paper's platform; not "
                         "the risk",
    "reference_probability": "the risk of the reference day (training medians): top_factors are contributions "
                             "against it, in percentage points (pp); 'not measured' groups the factors not given",
    "release": "the platform release that made the number: every model of one release was trained together",
    "cv_auroc": "the model config's honest cross-validated AUROC, mean over folds",
}
TOP_FACTORS = 5  # contributions shown per prediction
EXPLAIN_ROWS = 256  # rows explained per batch: bounded memory (each row is evaluated ~350 times)


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

    def inputs(self, X: pd.DataFrame, patient=None, day=None) -> pd.DataFrame:
        """The estimator's input: day t's factors, then the history columns computed from the
        rows of the same `patient` on earlier `day`s (every value read as measured)."""
        from prcrs.data.history import history_features

        X = X[list(self.features)].reset_index(drop=True)
        if not self.history.any:
            return X
        if patient is None or day is None:
            raise DataError("this model reads a patient's earlier days: give each row a patient and a 'Relative date'")
        frame = pd.concat([pd.DataFrame({"patient": np.asarray(patient), "day": np.asarray(day)}), X], axis=1)
        return pd.concat([X, history_features(frame, self.features, self.history)], axis=1)

    def past_days(self, patient, day) -> np.ndarray:
        """Per row, how many of the same patient's earlier days its history read: those within
        the lag window, or every earlier day when it reads running extremes."""
        if not self.history.any:
            return np.zeros(len(day), int)
        day, used = np.asarray(day, float), np.zeros(len(day), int)
        for rows in pd.Series(np.arange(len(day))).groupby(np.asarray(patient), dropna=False).indices.values():
            days = np.sort(day[rows])  # the patient's days: those in [t - reach, t) are read
            used[rows] = np.searchsorted(days, day[rows]) - np.searchsorted(days, day[rows] - self.history.reach)
        return used

    def predict_inputs(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """Estimator inputs (`inputs`) -> (n, 4): the raw score, the risk, the paper's conversion and
        the rule-out band."""
        raw = np.asarray(severe_probability(self.estimator, inputs), float)
        risk = self.calibrator.predict(raw)
        return pd.DataFrame({"probability": raw, "calibrated_probability": risk,
                             "paper_probability": self.paper_conversion.predict(raw),
                             "risk_band": self.band.predict(raw, risk) if self.band is not None else "not fitted"})

    def predict(self, X: pd.DataFrame, patient=None, day=None) -> pd.DataFrame:
        """X: (n, features) in schema units, NaN where missing (with `patient` and `day` per row
        for a history model) -> (n, 4) (`predict_inputs`)."""
        return self.predict_inputs(self.inputs(X, patient, day))

    def calibrated(self, inputs: pd.DataFrame) -> np.ndarray:
        """The calibrated probability of estimator inputs (`inputs`' frame)."""
        return self.calibrator.predict(np.asarray(severe_probability(self.estimator, inputs), float))

    def reference_inputs(self, columns) -> pd.Series:
        """The reference day as estimator inputs: the training medians; the factors the platform
        never reads are missing there too, as in every input."""
        reference = pd.Series(self.reference, dtype=float).reindex(columns)
        reference[[c for c in reference.index.tolist() if explain.factor_of(c) in IGNORED]] = np.nan
        return reference

    def explain_inputs(self, inputs: pd.DataFrame) -> tuple[pd.DataFrame, float]:
        """Each factor's contribution to the calibrated probability of estimator inputs against the
        reference day, the factors with no value in a row (day t or earlier) together as one
        player, `explain.NOT_MEASURED` (`explain.contributions`); and the reference day's
        calibrated probability: a row's contributions sum to its probability minus it."""
        reference, encoding = self.reference_inputs(inputs.columns), self.estimator.column_encoding(inputs.columns)
        calibrated = replace(encoding, proba=lambda M: self.calibrator.predict(np.asarray(encoding.proba(M), float)))
        return (explain.contributions_by_measured(calibrated, inputs, reference, never=set(IGNORED)),
                float(self.calibrated(reference.to_frame().T)[0]))

    def explain(self, X: pd.DataFrame, patient=None, day=None, rows=None) -> tuple[pd.DataFrame, float]:
        """`explain_inputs` of `rows` of X (default all)."""
        inputs = self.inputs(X, patient, day)
        return self.explain_inputs(inputs if rows is None else inputs.iloc[rows])


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
    from prcrs.models.catalogue import model_label

    info = model.info
    return {"release": info.get("release"), "model": model_label(info.get("model", "?"), info.get("history")),
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

    @property
    def combinations(self) -> tuple[str, ...]:
        """The factor combinations the release has models for (a site's release may lack some), in
        the platform's order: rows are routed to the first of them their labs allow."""
        return tuple(c for c in schema.COMBINATIONS if any(code == c for code, _ in self.models))

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
    def release(self) -> str:
        """The release the models come from (`registry`): one id, or the ids joined when mixed."""
        return ", ".join(sorted({str(m.info.get("release")) for m in self.models.values()}))

    @property
    def reads_history(self) -> bool:
        return any(m.history.any for m in self.models.values())

    def predict_rows(self, rows: list[RowInput], horizons, patient=None, day=None,
                     steps: Steps | None = None, explain_rows: bool = True) -> list[list[dict]]:
        """Per row, one result dict per horizon (combination, the risk and the day it is for, the
        risk as shown, the rule-out band, top factors, past days used, the model's `provenance`,
        warnings, error). `patient` and `day` (one each per row) line up a patient's days for
        history models: a history reads every value a row gave (not only its combination's), and
        a row with a bad value is nobody's history. Explanations run `EXPLAIN_ROWS` rows at a time
        (`steps` counts those batches: `explain_batches`); `explain_rows=False` leaves them out
        (top factors and reference None: about 350 model evaluations a row saved)."""
        with prediction_threads(usable_cpus()):  # every core, each row computed as on one
            return self._predict_rows(rows, self.check_horizons(horizons), patient, day, steps, explain_rows)

    def _predict_rows(self, rows: list[RowInput], horizons, patient, day, steps: Steps | None,
                      explain_rows: bool) -> list[list[dict]]:
        out = [[{"horizon": h, "combination": r.combination, "past_days": 0, "warnings": list(r.warnings),
                 "error": r.error} for h in horizons] for r in rows]
        valid = [i for i, r in enumerate(rows) if r.error is None]
        parsed = [i for i, r in enumerate(rows) if not r.field_errors]  # every one is someone's history
        if self.reads_history and (patient is None or day is None):
            patient, day = np.arange(len(rows)), np.zeros(len(rows)) if day is None else day  # no past
            for i in valid:
                for res in out[i]:
                    res["warnings"].append("no patient and 'Relative date' given: no earlier day was read")
        for code in sorted({r.combination for r in rows if r.error is None}):
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
                    keep = np.searchsorted(parsed, idx)  # idx's positions in parsed (both ascending)
                    inputs, used = model.inputs(X, who, when).iloc[keep], model.past_days(who, when)[keep]
                else:
                    inputs, used = model.inputs(model_frame([rows[i] for i in idx], model.features)), [0] * len(idx)
                pred, origin = model.predict_inputs(inputs).to_dict("records"), provenance(model)
                for start in range(0, len(idx), EXPLAIN_ROWS):
                    batch = inputs.iloc[start:start + EXPLAIN_ROWS]
                    contributions, reference = model.explain_inputs(batch) if explain_rows else (None, None)
                    players = None if contributions is None else list(contributions.columns)
                    matrix = None if contributions is None else contributions.to_numpy(float)
                    for k in range(start, start + len(batch)):
                        i, values = idx[k], pred[k]
                        top = None if matrix is None else \
                            explain.top_factors(matrix[k - start], players, rows[i].values, TOP_FACTORS)
                        out[i][j].update(values, past_days=int(used[k]), reference_probability=reference,
                                         calibrated_risk=shown_risk(values["calibrated_probability"]),
                                         top_factors=top, **origin)
                    if steps is not None:
                        steps.done(f"combination {code}, {h} day(s) ahead: {min(start + EXPLAIN_ROWS, len(idx))} of "
                                   f"{len(idx)} row(s) predicted{' and explained' if explain_rows else ''}")
        return out

    def explain_batches(self, rows: list[RowInput], horizons) -> int:
        """How many explanation batches `predict_rows` runs for `rows` (a progress total)."""
        counts = pd.Series([r.combination for r in rows if r.error is None]).value_counts()
        return int(sum(-(-n // EXPLAIN_ROWS) for code, n in counts.items() for h in horizons
                       if (code, h) in self.models))

    def predict_table(self, raw: pd.DataFrame, horizons=HORIZONS, strict: bool = False,
                      columns: Columns | None = None, explain_rows: bool = True,
                      rounded: bool = True) -> tuple[pd.DataFrame, Columns]:
        """A frame of input rows (any accepted column names, cells as read; the index is the file
        row) -> one output row per input row and horizon (OUTPUT_COLUMNS; probabilities to 4
        significant digits, unless `rounded` is False), and how its columns were read
        (`inputs.read_columns`: units, the percentage convention of each column, notes, unknown
        columns). `strict`: see `inputs.read_values`; `explain_rows`: see `predict_rows`."""
        columns = read_columns(raw.columns, {c: raw[c].tolist() for c in raw.columns}) if columns is None else columns
        ids = {name_lookup().get(normal_name(c)): c for c in raw.columns}
        cells = raw[[*columns.readings, *columns.ignored]].to_dict("records")
        rows = [check_row(row, strict, columns, combinations=self.combinations) for row in cells] if columns.readings \
            else \
            [RowInput(error="nothing usable: no factor column") for _ in range(len(raw))]
        patient, day = patients_and_days(raw, ids, self.reads_history)
        batches = self.explain_batches(rows, horizons)
        results = self.predict_rows(rows, horizons, patient, day, Steps(batches, "predicting") if batches else None,
                                    explain_rows)
        records = []
        days = pd.to_numeric(raw[ids["day"]], errors="coerce").to_numpy(float) if "day" in ids else None
        patients = raw[ids["patient"]].tolist() if "patient" in ids else [None] * len(raw)
        for n, (index, who, per_horizon) in enumerate(zip(raw.index, patients, results, strict=True)):
            when = None if days is None or not np.isfinite(days[n]) else days[n]
            for res in per_horizon:
                records.append({"row": index, "patient": who, "day": when, **res,
                                "predicted_day": None if when is None else when + res["horizon"],
                                "top_factors": factors_text(res.get("top_factors")),
                                "warnings": "; ".join(res["warnings"])})
        table = pd.DataFrame(records).reindex(columns=list(OUTPUT_COLUMNS))
        table[list(PROBABILITIES)] = table[list(PROBABILITIES)].astype(float)
        if rounded:  # 4 significant digits: 0.00108, 0.1116
            table[list(PROBABILITIES)] = table[list(PROBABILITIES)].map(lambda v: float(f"{v:.4g}") if np.isfinite(v)
                                                                         else v)
        table["cv_auroc"] = table["cv_auroc"].astype(float).round(3)
        return table, columns


def factors_text(top: list[dict] | None) -> str | None:
    """Top factors as one CSV cell: 'IL-6 +12.1 pp; CRP -3.0 pp' (percentage points of the
    calibrated probability against the reference day)."""
    if not top:
        return None
    return "; ".join(f"{t['name']} {100 * t['contribution']:+.1f} pp" for t in top)


def patients_and_days(raw: pd.DataFrame, ids: dict[str | None, str],
                      history: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per input row, its patient and day since infusion, for history models: the patient column,
    or (as in the published sheet) a new patient wherever 'Relative date' does not increase;
    (None, None) without a 'Relative date' column or, with `history` False, when nothing reads
    them. A blank patient cell is refused, naming the rows (merged cells read as blank: filling
    them down could hand one patient's days to another). `ids`: project key -> input column."""
    if "patient" in ids:
        blank = raw[ids["patient"]].isna() | raw[ids["patient"]].astype(str).str.strip().isin({"", "nan", "None"})
        if blank.any():
            rows = [str(r) for r in raw.index[blank.to_numpy()]]
            raise DataError(f"the patient column {ids['patient']!r} is blank on row(s) {', '.join(rows[:10])}"
                            f"{' ...' if len(rows) > 10 else ''}: write the patient on every row (a patient written "
                            "once over merged cells reads as blank)")
    if "day" not in ids or not history:
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
