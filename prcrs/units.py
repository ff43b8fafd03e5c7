"""Units of the 42 factors: the schema's own (`schema.Feature.unit`, that of the published sheet)
and the other units a lab export may use, each with its factor to the schema's unit. The one
table of units: inputs, site files and the COVID-19 alignment all read it.

A unit is compared after `normal_unit` (case, spaces, 'µ'/'mc' -> 'u', '×10^9', '10*9' and
'10⁹' spelled one way), so 'x10^9/L', '10*9/l' and '10⁹/L' are one unit.

    >>> factor("il6", "ng/mL"), factor("crp", "mg/dL"), factor("wbc", "10^3/µL")
    (1000.0, 10.0, 1.0)
    >>> factor("il6", "mmol/L")
    Traceback (most recent call last):
    ...
    prcrs.errors.DataError: unknown unit 'mmol/L' for IL-6 (known: pg/mL, ng/L, ng/mL)
"""

from __future__ import annotations

import re

from prcrs import schema
from prcrs.errors import DataError

_COUNT_9 = {"10^9/L": 1.0, "10^3/uL": 1.0, "10^3/mm3": 1.0, "K/uL": 1.0, "G/L": 1.0, "/nL": 1.0,
            "/uL": 1e-3, "cells/uL": 1e-3, "/mm3": 1e-3}
_ENZYME = {"U/L": 1.0, "IU/L": 1.0, "ukat/L": 60.0}
_CYTOKINE = {"pg/mL": 1.0, "ng/L": 1.0, "ng/mL": 1000.0}
_PERCENT = {"fraction": 1.0, "%": 0.01}
_SECONDS = {"s": 1.0, "sec": 1.0, "seconds": 1.0}
_MONOVALENT = {"mmol/L": 1.0, "mEq/L": 1.0}

# factor key -> {unit: factor to the schema's unit}; the schema's unit first, with factor 1.
OTHER: dict[str, dict[str, float]] = {
    "d_dimer": {"ug/mL FEU": 1.0, "ng/mL FEU": 1e-3, "ug/L FEU": 1e-3,
                "mg/L DDU": 2.0, "ug/mL DDU": 2.0, "ng/mL DDU": 2e-3, "ug/L DDU": 2e-3},
    "procalcitonin": {"ug/L": 1.0},
    "bnp": {"ng/L": 1.0, "pmol/L": 3.46},  # BNP 3464 g/mol
    "prealbumin": {"mg/dL": 10.0, "g/L": 1000.0},
    "tumor_burden": _PERCENT, "neutrophil_pct": _PERCENT, "lymphocyte_pct": _PERCENT, "monocyte_pct": _PERCENT,
    "pt": _SECONDS, "aptt": _SECONDS,
    "fibrinogen": {"mg/dL": 0.01},
    "rbc": {"10^6/uL": 1.0, "M/uL": 1.0, "T/L": 1.0},
    "hemoglobin": {"g/dL": 10.0, "mmol/L": 16.11},  # haemoglobin (monomer) 16,114 g/mol
    **{k: _COUNT_9 for k in ("wbc", "neutrophil_count", "lymphocyte_count", "platelet", "monocyte_count")},
    "sodium": _MONOVALENT, "potassium": _MONOVALENT, "chloride": _MONOVALENT,
    "calcium": {"mg/dL": 1 / 4.008, "mEq/L": 0.5},  # Ca 40.08 g/mol, divalent
    "uric_acid": {"mg/dL": 59.48, "mmol/L": 1000.0},  # uric acid 168.1 g/mol
    "glucose": {"mg/dL": 1 / 18.016},  # glucose 180.16 g/mol
    "triglyceride": {"mg/dL": 0.01129},  # as triolein, 885.7 g/mol
    "albumin": {"g/dL": 10.0},
    "alpha_hbdh": _ENZYME, "alt": _ENZYME, "ast": _ENZYME, "alp": _ENZYME, "ggt": _ENZYME, "ldh": _ENZYME,
    "creatinine": {"mg/dL": 88.42, "mmol/L": 1000.0},  # creatinine 113.12 g/mol
    "crp": {"mg/dL": 10.0, "ug/mL": 1.0},
    "ferritin": {"ug/L": 1.0},
    **{k: _CYTOKINE for k in ("il2", "il4", "il6", "il10", "tnf_alpha", "ifn_gamma", "il17a")},
}
# Read as the schema's unit, with a note: the export did not say which of two conventions it uses.
ASSUMED: dict[tuple[str, str], str] = {
    ("d_dimer", "mg/L"): "D-dimer in mg/L read as mg/L FEU (the training sheet's); DDU values are half as large",
    ("d_dimer", "ug/mL"): "D-dimer in ug/mL read as ug/mL FEU (the training sheet's); DDU values are half as large",
}
_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


def normal_unit(text: str) -> str:
    """A unit as compared: lower case, no spaces, 'µ'/'μ'/'mc' -> 'u', powers of ten as '10^n'
    ('×10⁹/L', 'x10*9/l', '10E9/L' -> '10^9/l'), 'mm³' -> 'mm3', 'percent' -> '%'."""
    unit = str(text).strip().translate(_SUPERSCRIPT).replace("µ", "u").replace("μ", "u").lower()
    unit = re.sub(r"\s+", "", unit).replace("mcg", "ug").replace("mcl", "ul").replace("³", "3")
    unit = re.sub(r"^[x×*]?10[\^*e]?(?=\d)", "10^", unit)
    return "%" if unit in {"percent", "pct"} else unit


def units_of(key: str) -> dict[str, float]:
    """Every accepted unit of factor `key` as written here -> its factor to the schema's unit."""
    return {schema.BY_KEY[key].unit: 1.0, **OTHER.get(key, {})}


def factor(key: str, unit: str) -> float:
    """The factor turning a value of `key` in `unit` into the schema's unit; DataError naming the
    unit and the known ones when it is not one of `units_of(key)` (or of `ASSUMED`)."""
    wanted = normal_unit(unit)
    for known, value in units_of(key).items():
        if normal_unit(known) == wanted:
            return value
    if any(normal_unit(u) == wanted for k, u in ASSUMED if k == key):
        return 1.0
    raise DataError(f"unknown unit {unit!r} for {schema.BY_KEY[key].name} (known: {', '.join(units_of(key))})")


def assumption(key: str, unit: str) -> str | None:
    """The note to give when `unit` of `key` is read under an assumption (`ASSUMED`), else None."""
    wanted = normal_unit(unit)
    return next((note for (k, u), note in ASSUMED.items() if k == key and normal_unit(u) == wanted), None)


def other_units(key: str) -> dict[str, float]:
    """The units of `key` other than the schema's (for hints on implausible values)."""
    return {u: f for u, f in OTHER.get(key, {}).items() if f != 1.0}


# The US units of the Mount Sinai COVID-19 sheet, converted with this table's factors.
COVID_UNITS: dict[str, str] = {"calcium": "mg/dL", "glucose": "mg/dL", "creatinine": "mg/dL", "albumin": "g/dL",
                               "fibrinogen": "mg/dL"}


def covid_factor(key: str) -> float:
    """COVID-19 value x this = CAR-T value (1.0 for a factor already in the CAR-T unit)."""
    return factor(key, COVID_UNITS[key]) if key in COVID_UNITS else 1.0
