"""The feature schema, as data in one place.

Every other module reads the 42 CAR-T factors, their groups, units, plausible ranges,
the ablations and the platform's factor combinations from here.

Units are those of the published CAR-T sheet (SI, as reported by the treating hospital).
Percentages are stored as fractions (0.75 = 75 %). Plausible ranges are physiological
limits wide enough for very sick patients; values outside them are reported by the audit,
not silently changed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    key: str  # the project's own column name
    column: str  # the column name in the published CAR-T sheet
    name: str  # English name for reports
    unit: str
    group: int  # 1 coagulation/tumour load, 2 blood routine, 3 biochemistry, 4 cytokines
    low: float  # plausible range, in `unit`
    high: float
    skewed: bool = False  # right-skewed lab: log1p before standardizing


_F = Feature
FEATURES: tuple[Feature, ...] = (
    # group 1: coagulation and tumour load (9)
    _F("d_dimer", "D-dimer", "D-dimer", "mg/L FEU", 1, 0, 200, True),
    _F("procalcitonin", "Procalcitonin", "Procalcitonin", "ng/mL", 1, 0, 1000, True),
    _F("bnp", "Type B natriuretic peptide", "BNP", "pg/mL", 1, 0, 100_000, True),
    _F("alpha_hbdh", "Alpha hydroxybutyrate dehydrogenase", "alpha-HBDH", "U/L", 1, 0, 50_000, True),
    _F("prealbumin", "prealbumin", "Prealbumin", "mg/L", 1, 0, 1000),
    _F("tumor_burden", "Tumor burden", "Tumour burden", "fraction", 1, 0, 1),
    _F("pt", "Plasma prothrombin time", "PT", "s", 1, 5, 200),
    _F("aptt", "Activated partial prothrombin time", "APTT", "s", 1, 10, 300),
    _F("fibrinogen", "fibrinogen", "Fibrinogen", "g/L", 1, 0, 20),
    # group 2: blood routine (10)
    _F("rbc", "red blood cell", "Red blood cells", "10^12/L", 2, 0.3, 10),
    _F("hemoglobin", "hemoglobin", "Haemoglobin", "g/L", 2, 20, 250),
    _F("wbc", "leukocyte", "Leukocytes", "10^9/L", 2, 0, 1000, True),
    _F("neutrophil_pct", "Neutrophil percentage", "Neutrophils", "fraction", 2, 0, 1),
    _F("neutrophil_count", "Neutrophil count", "Neutrophil count", "10^9/L", 2, 0, 500, True),
    _F("lymphocyte_pct", "Lymphocyte percentage", "Lymphocytes", "fraction", 2, 0, 1),
    _F("lymphocyte_count", "Lymphocyte count", "Lymphocyte count", "10^9/L", 2, 0, 1000, True),
    _F("platelet", "platelet", "Platelets", "10^9/L", 2, 0, 2000, True),
    _F("monocyte_pct", "Monocyte percentage", "Monocytes", "fraction", 2, 0, 1),
    _F("monocyte_count", "Monocyte count", "Monocyte count", "10^9/L", 2, 0, 100, True),
    # group 3: biochemistry (16)
    _F("sodium", "sodium", "Sodium", "mmol/L", 3, 100, 200),
    _F("potassium", "potassium", "Potassium", "mmol/L", 3, 1, 10),
    _F("chloride", "chlorine", "Chloride", "mmol/L", 3, 60, 150),
    _F("calcium", "calcium", "Calcium", "mmol/L", 3, 0.5, 5),
    _F("uric_acid", "Uric acid", "Uric acid", "umol/L", 3, 0, 3000, True),
    _F("glucose", "glucose", "Glucose", "mmol/L", 3, 0.5, 60, True),
    _F("triglyceride", "triglyceride", "Triglycerides", "mmol/L", 3, 0, 60, True),
    _F("albumin", "albumin", "Albumin", "g/L", 3, 5, 70),
    _F("alt", "Glutamic pyruvic transaminase", "ALT", "U/L", 3, 0, 20_000, True),
    _F("ast", "Glutamic oxalacetic transaminase", "AST", "U/L", 3, 0, 30_000, True),
    _F("alp", "Alkaline phosphatase", "ALP", "U/L", 3, 0, 10_000, True),
    _F("ggt", "gamma glutamyl transpeptidase", "GGT", "U/L", 3, 0, 10_000, True),
    _F("ldh", "Lactate dehydrogenase", "LDH", "U/L", 3, 0, 100_000, True),
    _F("creatinine", "creatinine", "Creatinine", "umol/L", 3, 5, 3000, True),
    _F("crp", "C-reactive protein", "CRP", "mg/L", 3, 0, 1000, True),
    _F("ferritin", "ferritin", "Ferritin", "ng/mL", 3, 0, 1_000_000, True),
    # group 4: cytokines (7)
    _F("il2", "IL2", "IL-2", "pg/mL", 4, 0, 1_000_000, True),
    _F("il4", "IL4", "IL-4", "pg/mL", 4, 0, 1_000_000, True),
    _F("il6", "IL6", "IL-6", "pg/mL", 4, 0, 1_000_000, True),
    _F("il10", "IL10", "IL-10", "pg/mL", 4, 0, 1_000_000, True),
    _F("tnf_alpha", "TNFα", "TNF-alpha", "pg/mL", 4, 0, 1_000_000, True),
    _F("ifn_gamma", "IFNγ", "IFN-gamma", "pg/mL", 4, 0, 1_000_000, True),
    _F("il17a", "IL17A", "IL-17A", "pg/mL", 4, 0, 1_000_000, True),
)
FEATURE_KEYS: tuple[str, ...] = tuple(f.key for f in FEATURES)
BY_KEY: dict[str, Feature] = {f.key: f for f in FEATURES}

GROUP_NAMES: dict[int, str] = {
    1: "coagulation and tumour load",
    2: "blood routine",
    3: "biochemistry",
    4: "cytokines",
}


@dataclass(frozen=True)
class Extra:
    """A CAR-T sheet column that is available but not one of the 42 factors."""

    key: str
    column: str
    unit: str
    low: float
    high: float


EXTRAS: tuple[Extra, ...] = (
    Extra("age", "age", "years", 0, 120),
    Extra("day", "Relative date", "days since infusion", 0, 365),
    Extra("blast_pct", "problast", "fraction", 0, 1),
    Extra("dose", "dose", "CAR-T cells", 0, 1e12),
    Extra("lines_of_therapy", "Multiline treatment", "count", 0, 50),
)
SEX_COLUMN = "sex"
GRADE_COLUMN = "CRS"
DAY_COLUMN = "Relative date"
SEVERE_GRADE = 3  # severe CRS: grade >= 3


@functools.cache
def group_features(*groups: int) -> tuple[str, ...]:
    """Feature keys of the given groups, in schema order (cached: a table reads it for each row)."""
    unknown = set(groups) - set(GROUP_NAMES)
    if unknown:
        raise ValueError(f"unknown feature group(s) {sorted(unknown)}; known: 1, 2, 3, 4")
    return tuple(f.key for f in FEATURES if f.group in groups)


# Ablations of the paper's Table 3: every group but the one deleted.
ABLATIONS: dict[str, tuple[int, ...]] = {
    "none": (1, 2, 3, 4),
    "del_cytokines": (1, 2, 3),
    "del_biochemical": (1, 2, 4),
    "del_blood_routine": (1, 3, 4),
    "del_clotting": (2, 3, 4),
}
DELETIONS: tuple[str, ...] = tuple(a for a in ABLATIONS if a != "none")  # Table 3's rows: one group deleted

# Factor combinations of the paper's platform, in its order of preference.
COMBINATIONS: tuple[str, ...] = ("1234", "123", "4", "23", "3", "2")


def combination_groups(code: str) -> tuple[int, ...]:
    """'123' -> (1, 2, 3)."""
    try:
        groups = tuple(int(c) for c in code)
    except ValueError:
        raise ValueError(f"factor combination {code!r} must be digits 1-4, e.g. '123'") from None
    group_features(*groups)
    return groups


def select_features(ablation: str = "none", factors: str | None = None) -> tuple[str, ...]:
    """Feature keys for an ablation, optionally restricted to a factor combination."""
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; known: {', '.join(ABLATIONS)}")
    groups = set(ABLATIONS[ablation])
    if factors is not None:
        groups &= set(combination_groups(str(factors)))
    if not groups:
        raise ValueError(f"ablation {ablation!r} with factors {factors!r} leaves no feature")
    return group_features(*sorted(groups))


# The CAR-T factors measured in the COVID-19 cohort too (27: matched by name, see
# COVID_ALIASES, less COVID_EXCLUDED). Other factors are missing in COVID-19 samples.
COVID_SHARED: tuple[str, ...] = (
    "d_dimer", "procalcitonin", "pt", "aptt", "fibrinogen",
    "rbc", "wbc", "neutrophil_pct", "neutrophil_count", "lymphocyte_pct", "lymphocyte_count",
    "platelet", "monocyte_pct", "monocyte_count",
    "sodium", "potassium", "calcium", "glucose", "albumin", "alt", "ast", "ldh", "creatinine",
    "crp", "ferritin", "il6", "tnf_alpha",
)

# COVID-19 sheet columns whose name differs from the CAR-T sheet's.
COVID_ALIASES: dict[str, str] = {"erythrocyte": "rbc", "neutrophil": "neutrophil_count"}


# The COVID-19 sheet's US units and their factors are in `prcrs.units` (COVID_UNITS, covid_factor).

# Shared by name but not the same quantity: the CAR-T 'chlorine' column holds values around
# 15 on 89 % of days (chloride is 95-110 mmol/L), so it cannot be aligned with COVID chloride.
COVID_EXCLUDED: dict[str, str] = {
    "chloride": "CAR-T 'chlorine' is mostly ~15, not chloride in mmol/L; COVID's is chloride",
}
