"""Subgroups a clinician asks about: the young (the paper's 62 patients "aged 0-25": under 25
years, children and young adults, often treated on paediatric protocols) against older adults,
and sex. Each is a set of patients, taken
from the cohort's covariates at infusion; a group with too few severe patients is flagged, not
hidden.

    >>> import pandas as pd
    >>> covariates = pd.DataFrame({"age": [12, 25, 70], "female": [1, 0, 1]})
    >>> {name: ids.tolist() for name, ids in subgroup_patients(covariates).items()}
    {'aged under 25': [0], 'aged 25 or over': [1, 2], 'female': [0, 2], 'male': [1]}
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prcrs.clinical.calibration import calibration_stats
from prcrs.metrics import auprc, auroc

YOUNG_BELOW = 25  # years: the paper's younger group, "0-25" (under 25: its 62 patients in the published sheet)
MIN_SEVERE_PATIENTS = 10  # fewer severe patients than this: too small to say anything


def patient_covariates(frame: pd.DataFrame) -> pd.DataFrame:
    """Per patient (index: the 0-based patient number runs use), `age` (years) and `female`
    (1/0, NaN unknown) at infusion, from a cohort's frame."""
    return frame.groupby("patient")[["age", "female"]].first()


def subgroup_patients(covariates: pd.DataFrame) -> dict[str, np.ndarray]:
    """Patient numbers of each subgroup; a patient with an unknown covariate is in neither side."""
    age, female = covariates["age"], covariates["female"]
    return {f"aged under {YOUNG_BELOW}": covariates.index[age < YOUNG_BELOW].to_numpy(),
            f"aged {YOUNG_BELOW} or over": covariates.index[age >= YOUNG_BELOW].to_numpy(),
            "female": covariates.index[female == 1].to_numpy(), "male": covariates.index[female == 0].to_numpy()}


def subgroup_table(oof: pd.DataFrame, covariates: pd.DataFrame, calibrated: np.ndarray) -> pd.DataFrame:
    """One row per subgroup of the out-of-fold predictions: patients, days, severe days and
    patients, AUROC and AUPRC of `probability`, calibration (`calibration_stats`) of the
    `calibrated` probabilities (aligned with `oof`'s rows), and `too_small`."""
    rows = []
    for name, ids in subgroup_patients(covariates).items():
        part = oof["patient"].isin(ids).to_numpy()
        y, p = oof["label"].to_numpy(int)[part], oof["probability"].to_numpy(float)[part]
        severe_patients = oof.loc[part].groupby("patient")["label"].max().sum()
        cal = calibration_stats(calibrated[part], y)
        rows.append({"subgroup": name, "patients": int(oof.loc[part, "patient"].nunique()), "days": int(part.sum()),
                     "severe_days": int(y.sum()), "severe_patients": int(severe_patients),
                     "auroc": auroc(y, p), "auprc": auprc(y, p),
                     "citl": cal["citl"], "oe": cal["oe"], "too_small": bool(severe_patients < MIN_SEVERE_PATIENTS)})
    return pd.DataFrame(rows)


def metric_key(subgroup: str) -> str:
    """An MLflow-safe key of a subgroup name: 'aged under 25' -> 'aged_under_25'."""
    return "".join(c if c.isalnum() else "_" for c in subgroup)
