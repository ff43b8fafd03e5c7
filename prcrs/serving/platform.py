"""The prediction platform: one calibrated model per factor combination and horizon, and the
choice of combination per row.

A `CombinationModel` predicts P(severe CRS, grade >= 3, on day t + horizon) from day t's labs
with three numbers per row: `probability` (the model's raw output), `calibrated_probability`
(the better-scoring standard calibrator, isotonic or Platt, fitted on patient-grouped
out-of-fold predictions) and `paper_probability` (the paper's windowed conversion of the same
out-of-fold predictions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prcrs import schema
from prcrs.data.cohort import column_lookup
from prcrs.errors import DataError, PrcrsError
from prcrs.serving.inputs import IGNORED, RowInput, check_row, model_frame, resolve_columns

HORIZONS = (1, 2, 3)
OUTPUT_COLUMNS = ("row", "patient", "day", "horizon", "combination", "probability", "calibrated_probability",
                  "paper_probability", "warnings", "error")


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

    def fill_value_inputs(self, values: dict[str, float]) -> list[str]:
        """Keys of the values that equal one of the training sheet's label-imputation fill values:
        the model reads them as not measured, as it did in training (`prcrs.data.fingerprint`)."""
        masker = getattr(getattr(self.estimator, "preprocessor_", None), "masker_", None)
        fills = masker.fill_values_ if masker is not None else {}
        return [k for k, v in values.items() if k in self.features and v in fills.get(k, ())]

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """X: (n, features) in schema units, NaN where missing -> (n, 3) probabilities."""
        raw = np.asarray(self.estimator.predict_proba(X[list(self.features)]), float)
        return pd.DataFrame({"probability": raw, "calibrated_probability": self.calibrator.predict(raw),
                             "paper_probability": self.paper_conversion.predict(raw)})


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

    def predict_rows(self, rows: list[RowInput], horizons) -> list[list[dict]]:
        """Per row, one result dict per horizon (combination, probabilities, warnings, error)."""
        horizons = self.check_horizons(horizons)
        out = [[{"horizon": h, "combination": r.combination, "warnings": list(r.warnings), "error": r.error}
                for h in horizons] for r in rows]
        for code in {r.combination for r in rows if r.error is None}:
            idx = [i for i, r in enumerate(rows) if r.error is None and r.combination == code]
            for j, h in enumerate(horizons):
                model = self.models.get((code, h))
                if model is None:
                    for i in idx:
                        out[i][j]["error"] = f"no model for combination {code} at horizon {h}"
                    continue
                pred = model.predict(model_frame([rows[i] for i in idx], model.features))
                for i, values in zip(idx, pred.to_dict("records"), strict=True):
                    out[i][j].update(values)
                    masked = model.fill_value_inputs(rows[i].values)
                    if masked:
                        names = ", ".join(f"{schema.BY_KEY[k].name} {rows[i].values[k]:g}" for k in masked)
                        out[i][j]["warnings"].append(f"read as not measured, as in training: {names} equal(s) a "
                                                     "label-imputation fill value of the training sheet")
        return out

    def predict_table(self, raw: pd.DataFrame, horizons=HORIZONS) -> tuple[pd.DataFrame, list[str]]:
        """A frame of input rows (any accepted column names, cells as read; the index is the file
        row) -> one output row per input row and horizon (OUTPUT_COLUMNS), and the unknown input
        columns (ignored)."""
        mapping, ignored, unknown = resolve_columns(raw.columns)
        lookup = column_lookup()
        ids = {lookup.get(str(c).strip().lower()): c for c in raw.columns}
        read = [*mapping, *ignored]
        rows = [check_row(cells) for cells in raw[read].to_dict("records")] if mapping else \
            [RowInput(error="nothing usable: no factor column") for _ in range(len(raw))]
        results = self.predict_rows(rows, horizons)
        records = []
        for (index, source), per_horizon in zip(raw.iterrows(), results, strict=True):
            patient = source[ids["patient"]] if "patient" in ids else None
            day = source[ids["day"]] if "day" in ids else None
            for res in per_horizon:
                records.append({"row": index, "patient": patient, "day": day, **res,
                                "warnings": "; ".join(res["warnings"])})
        return pd.DataFrame(records).reindex(columns=list(OUTPUT_COLUMNS)), unknown


def example_values(model: CombinationModel) -> dict[str, float]:
    """The page's example: the training medians of the full combination, rounded for display."""
    return {k: float(f"{v:.3g}") for k, v in model.medians.items() if k not in IGNORED}
