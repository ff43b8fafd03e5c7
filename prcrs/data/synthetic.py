"""The embedded synthetic cohort: same columns and units as the published sheets.

Each patient has 1 to 18 days after infusion. A latent inflammation curve rises to a peak a few
days after infusion; the CRS grade follows it with a lag of about 1.5 days, so IL-6, IFN-gamma,
CRP and ferritin (and, more weakly, IL-10, D-dimer and LDH) rise one to two days before severe
CRS. Labs are missing at realistic rates (cytokines most often). About 5 % of days are severe.
Nothing here is derived from the real data beyond order-of-magnitude medians of each lab and the
number of decimals each lab is reported with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prcrs import schema
from prcrs.data.cohort import Cohort

# key: (typical median, log-scale spread between patients, response to inflammation).
# A response r multiplies the lab by exp(r * inflammation); inflammation peaks near 3.
_LABS: dict[str, tuple[float, float, float]] = {
    "d_dimer": (0.8, 0.8, 0.35), "procalcitonin": (0.3, 0.8, 0.25), "bnp": (120, 1.0, 0.15),
    "alpha_hbdh": (150, 0.4, 0.1), "prealbumin": (180, 0.3, -0.1), "tumor_burden": (0.1, 0.0, 0.0),
    "pt": (12.5, 0.08, 0.03), "aptt": (34, 0.12, 0.04), "fibrinogen": (3.3, 0.25, -0.05),
    "rbc": (2.6, 0.2, -0.03), "hemoglobin": (75, 0.2, -0.03), "wbc": (1.7, 0.9, 0.0),
    "neutrophil_pct": (0.7, 0.0, 0.0), "neutrophil_count": (1.2, 0.9, 0.0),
    "lymphocyte_pct": (0.3, 0.0, 0.0), "lymphocyte_count": (0.35, 0.8, 0.0),
    "platelet": (60, 0.8, -0.15), "monocyte_pct": (0.25, 0.0, 0.0), "monocyte_count": (0.3, 0.7, 0.0),
    "sodium": (138, 0.02, -0.005), "potassium": (3.9, 0.08, 0.0), "chloride": (100, 0.03, 0.0),
    "calcium": (2.25, 0.05, -0.01), "uric_acid": (190, 0.3, 0.0), "glucose": (5.0, 0.15, 0.02),
    "triglyceride": (1.6, 0.3, 0.03), "albumin": (38, 0.1, -0.04), "alt": (18, 0.6, 0.05),
    "ast": (18, 0.6, 0.08), "alp": (68, 0.3, 0.02), "ggt": (45, 0.6, 0.03), "ldh": (170, 0.4, 0.2),
    "creatinine": (50, 0.2, 0.04), "crp": (8, 1.0, 0.9), "ferritin": (500, 0.8, 0.45),
    "il2": (4, 0.4, 0.1), "il4": (3.8, 0.3, 0.02), "il6": (6, 0.8, 1.2), "il10": (4, 0.6, 0.5),
    "tnf_alpha": (4, 0.3, 0.1), "ifn_gamma": (5, 0.8, 0.9), "il17a": (4.5, 0.3, 0.02),
}
# Decimals each lab is reported with, as in the published sheet (IL-6 5.2 pg/mL, D-dimer 0.43 mg/L):
# real values then repeat, as they do there, and can equal a grade's fill value.
_DECIMALS = {
    "d_dimer": 2, "procalcitonin": 3, "bnp": 2, "alpha_hbdh": 1, "prealbumin": 1, "tumor_burden": 4, "pt": 1,
    "aptt": 1, "fibrinogen": 2, "rbc": 2, "hemoglobin": 0, "wbc": 2, "neutrophil_pct": 3, "neutrophil_count": 2,
    "lymphocyte_pct": 3, "lymphocyte_count": 2, "platelet": 0, "monocyte_pct": 3, "monocyte_count": 2,
    "sodium": 1, "potassium": 2, "chloride": 1, "calcium": 2, "uric_acid": 1, "glucose": 2, "triglyceride": 2,
    "albumin": 1, "alt": 1, "ast": 1, "alp": 1, "ggt": 1, "ldh": 1, "creatinine": 1, "crp": 2, "ferritin": 3,
    "il2": 1, "il4": 1, "il6": 1, "il10": 1, "tnf_alpha": 1, "ifn_gamma": 1, "il17a": 2,
}
_MISSING_RATE = {1: 0.15, 2: 0.05, 3: 0.08, 4: 0.25}
_LAG_DAYS = 1.5


def _inflammation(days: np.ndarray, peak_day: float, height: float, width: float) -> np.ndarray:
    return height * np.exp(-0.5 * ((days - peak_day) / width) ** 2)


def _grade(inflammation: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return np.digitize(inflammation + noise, [0.5, 1.4, 2.5, 3.4])


PATIENTS = 202  # as many as the published sheet: `data.n_patients`'s default (conf/data/)


@dataclass(frozen=True)
class SiteShift:
    """How another hospital differs from the embedded cohort: its patients' CRS is more or less
    severe (`severity` scales the inflammation peak, and so the share of severe days), its assays
    read some labs higher or lower (`lab_scale`: factor key -> multiplier), it draws some factor
    groups more or less often (`missing_scale`: group -> multiplier of the missing rate) and never
    measures some factors (`absent`), and grades CRS more or less severely for the same
    inflammation (`grading`, added to the inflammation the grade follows: another grading scale
    or practice, which the labs cannot show)."""

    severity: float = 1.0
    grading: float = 0.0
    lab_scale: dict = field(default_factory=dict)
    missing_scale: dict = field(default_factory=dict)
    absent: tuple[str, ...] = ()


def synthetic_cart(n_patients: int = PATIENTS, seed: int = 0, label_fill: bool = False,
                   shift: SiteShift | None = None) -> Cohort:
    """A seeded synthetic CAR-T cohort (see the module docstring).

    `label_fill=True` fills every missing lab cell the way the published sheet was made: with the
    median of that lab over the days of the same CRS grade. The values and missing cells are
    otherwise the same as without it, so the two cohorts measure what the fingerprint buys.
    `shift`: another site's cohort (`SiteShift`), drawn from the same random numbers.
    """
    shift = shift or SiteShift()
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        n_days = int(np.clip(rng.geometric(0.12) + 2, 1, 18)) if rng.random() > 0.03 else 1
        days = np.arange(n_days)
        height = rng.gamma(2.0, 0.8) * (1.6 if rng.random() < 0.25 else 1.0) * shift.severity
        peak, width = rng.uniform(2, 8), rng.uniform(1.2, 2.5)
        grade = _grade(_inflammation(days - _LAG_DAYS, peak, height, width) + shift.grading,
                       rng.normal(0, 0.3, n_days))
        infl = _inflammation(days, peak, height, width)
        frame = {"patient": p, "day": days, "grade": grade,
                 "female": float(rng.random() < 0.5), "age": float(rng.integers(4, 74)),
                 "blast_pct": float(np.round(rng.beta(1, 6), 3)), "dose": float(rng.choice([5e6, 1e7, 2e7])),
                 "lines_of_therapy": float(rng.integers(1, 10))}
        for key, (median, spread, response) in _LABS.items():
            base = median * np.exp(rng.normal(0, spread))
            values = base * np.exp(response * infl + rng.normal(0, 0.1 + 0.3 * spread, n_days))
            feature = schema.BY_KEY[key]
            if feature.unit == "fraction":
                values = rng.beta(median * 12, (1 - median) * 12, n_days)
            values = np.clip(values * shift.lab_scale.get(key, 1.0), feature.low, feature.high)
            values = np.round(values, _DECIMALS[key])
            rate = _MISSING_RATE[feature.group] * shift.missing_scale.get(feature.group, 1.0)
            missing = (rng.random(n_days) < rate) | (key in shift.absent)
            frame[key] = np.where(missing, np.nan, values)
        rows.append(pd.DataFrame(frame))
    out = pd.concat(rows, ignore_index=True)
    if label_fill:
        labs = list(_LABS)
        medians = out.groupby("grade")[labs].transform("median")
        out[labs] = out[labs].fillna(medians)
    columns = ["patient", "day", "female", "age", "blast_pct", "dose", "lines_of_therapy",
               *schema.FEATURE_KEYS, "grade"]
    return Cohort(out[columns], "cart", "synthetic")


def synthetic_covid(n_subjects: int = 600, seed: int = 0) -> Cohort:
    """A seeded synthetic COVID-19 cohort in CAR-T units: shared labs only, severity 0-2."""
    rng = np.random.default_rng(seed + 1)
    n_samples = rng.integers(1, 3, n_subjects)
    patient = np.repeat(np.arange(n_subjects), n_samples)
    infl = np.repeat(rng.gamma(1.5, 0.9, n_subjects), n_samples) + rng.normal(0, 0.2, len(patient))
    out = pd.DataFrame({"patient": patient, "day": pd.Series(patient).groupby(patient).cumcount().to_numpy(),
                        "female": (rng.random(len(patient)) < 0.4).astype(float),
                        "age": rng.integers(20, 90, len(patient)).astype(float)})
    for key in schema.FEATURE_KEYS:
        if key not in schema.COVID_SHARED:
            out[key] = np.nan
            continue
        median, spread, response = _LABS[key]
        values = median * np.exp(response * infl + rng.normal(0, 0.2 + 0.5 * spread, len(patient)))
        if schema.BY_KEY[key].unit == "fraction":
            values = rng.beta(median * 12, (1 - median) * 12, len(patient))
        out[key] = np.round(np.clip(values, schema.BY_KEY[key].low, schema.BY_KEY[key].high), 4)
    out["severity"] = np.digitize(infl + rng.normal(0, 0.3, len(patient)), [1.6, 2.6])
    return Cohort(out, "covid", "synthetic")


def to_sheet(frame: pd.DataFrame) -> pd.DataFrame:
    """A CAR-T cohort frame with the published sheet's column names (for writing test files)."""
    names = {f.key: f.column for f in schema.FEATURES} | {e.key: e.column for e in schema.EXTRAS}
    out = frame.drop(columns=["patient"]).rename(columns=names | {"grade": schema.GRADE_COLUMN})
    out.insert(0, schema.SEX_COLUMN, frame["female"].map({1.0: "female", 0.0: "male"}))
    return out.drop(columns=["female"])
