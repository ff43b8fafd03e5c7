"""A clinician's input: column names, numbers, plausible values, and which factor combination a
row can use. Shared by `prcrs predict`, the web API and the MLflow pyfunc models.

Names: the published sheet's, the project's keys and the page's labels are accepted, ignoring
case, spaces, punctuation and a trailing unit in brackets ('IL-6', 'il6', 'IL6 (pg/mL)',
'IFN-gamma', 'IFNγ'). Percentages: a value above 1 (up to 100) of a percentage factor is read as a
percentage (70 = 0.70) and a warning says so. A value outside its plausible range is dropped (read
as not measured) with a warning naming it and, where a common other unit or a misplaced decimal
point would make it plausible, which; `strict=True` refuses the row instead.

A factor group counts as available when at least half of its factors (rounded up) are present:
5 of 9 (coagulation and tumour load), 5 of 10 (blood routine), 8 of 16 (biochemistry), 4 of 7
(cytokines). A row uses the first combination in the platform's order (1234 > 123 > 4 > 23 > 3
> 2) whose groups are all available; its other factors are imputed from the training medians.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prcrs import schema
from prcrs.data.cohort import column_lookup, same_factor
from prcrs.data.io import MISSING_TOKENS

# Factors the platform does not read: its models saw them, so they are imputed like a missing value.
IGNORED = {"chloride": "not used: the published sheet's 'chlorine' (about 15 on most days) is not chloride "
                       "in mmol/L, so a real chloride value would mislead the model"}
GROUP_SIZES = {g: len(schema.group_features(g)) for g in schema.GROUP_NAMES}
PERCENT_KEYS = {f.key for f in schema.FEATURES if f.unit == "fraction"}  # stored as fractions, often typed as %
# Other units a value is often given in: (unit, factor to the schema's unit); the COVID-19 sheet's too.
OTHER_UNITS: dict[str, tuple[tuple[str, float], ...]] = {
    "hemoglobin": (("g/dL", 10.0),), "albumin": (("g/dL", 10.0),), "prealbumin": (("mg/dL", 10.0),),
    "uric_acid": (("mg/dL", 59.48),), "triglyceride": (("mg/dL", 0.01129),),
    **{c.key: ((c.covid_unit, c.factor),) for c in schema.COVID_UNIT_CONVERSIONS.values()},
}
_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "µ": "u", "μ": "u"}
MIN_PRESENT = {g: math.ceil(n / 2) for g, n in GROUP_SIZES.items()}


@dataclass
class RowInput:
    """One validated row: the factor values present (key -> value in schema units), the
    combination chosen, and what the user should know. `error` set means: not predicted;
    `field_errors` names the cells behind it (input name -> what is wrong)."""

    values: dict[str, float] = field(default_factory=dict)  # those of the combination chosen
    combination: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    field_errors: dict[str, str] = field(default_factory=dict)
    read: dict[str, float] = field(default_factory=dict)  # every factor value given (what a history reads)


def normal_name(name) -> str:
    """A column name as compared: lower case, Greek letters spelled out, a trailing unit in
    brackets dropped, only letters and digits kept ('IFN-γ (pg/mL)' -> 'ifngamma')."""
    text = "".join(_GREEK.get(c, c) for c in str(name).strip().lower())
    text = re.sub(r"\s*[\(\[][^\)\]]*[\)\]]\s*$", "", text)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isalnum())


@functools.cache
def name_lookup() -> dict[str, str]:
    """`normal_name` of every accepted name -> project key: the sheet's column names, the
    project's keys, the page's labels (`Feature.name`) and the sheet's other columns."""
    lookup = {normal_name(name): key for name, key in column_lookup().items()}
    lookup.update({normal_name(f.name): f.key for f in schema.FEATURES})
    lookup.update({"day": "day", "relativedate": "day"})
    return lookup


def label(key: str) -> str:
    """The page's label of a factor key (its `Feature.name`), the key itself otherwise."""
    return schema.BY_KEY[key].name if key in schema.BY_KEY else key


def resolve_columns(columns) -> tuple[dict[str, str], list[str], list[str]]:
    """(input column -> factor key, the IGNORED factors' columns, the unknown columns). Names
    are compared by `normal_name` against `name_lookup`; other known sheet columns (patient,
    day, CRS, ...) are in none of the three."""
    lookup = name_lookup()
    mapping, ignored, unknown = {}, [], []
    for col in columns:
        key = lookup.get(normal_name(col))
        if key in IGNORED:
            ignored.append(col)
        elif key in schema.BY_KEY:
            mapping[col] = key
        elif key is None:
            unknown.append(str(col))
    return mapping, ignored, unknown


def _number(raw) -> float | None:
    """A cell as float, None when blank; ValueError when it is not a number."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    if isinstance(raw, str):
        if raw.strip().lower() in MISSING_TOKENS:
            return None
        raw = raw.strip()
    if isinstance(raw, bool):
        raise ValueError(raw)
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def plausible_reading(key: str, value: float) -> str:
    """What would make an implausible `value` of factor `key` plausible: another common unit or
    a misplaced decimal point; '' when nothing does."""
    f = schema.BY_KEY[key]
    for unit, factor in OTHER_UNITS.get(key, ()):
        if f.low <= value * factor <= f.high:
            return f"likely in {unit} ({value:g} {unit} = {value * factor:.3g} {f.unit})"
    for shift in (10, 0.1, 100, 0.01):
        if value > 0 and f.low <= value * shift <= f.high:
            return f"a misplaced decimal point? ({value * shift:.3g} {f.unit} would be plausible)"
    return ""


def read_values(cells: dict[str, object], mapping: dict[str, str] | None = None,
                strict: bool = False) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """(factor key -> value in schema units, input name -> what is wrong, warnings) of one row.

    Non-numeric values and two names for one factor are errors. A percentage factor above 1
    (up to 100) is read as a percentage, with a warning. A value outside its plausible range is
    an error under `strict`, else it is dropped with a warning (`plausible_reading`). Messages
    name the input's own column name and the factor's page label."""
    mapping = resolve_columns(cells)[0] if mapping is None else mapping
    errors = {name: f"{label(key)} is also given as {', '.join(repr(n) for n in names if n != name)}: give one value"
              for key, names in same_factor(mapping).items() for name in names}
    values, warnings = {}, []
    for col, key in mapping.items():
        if col in errors:
            continue
        try:
            value = _number(cells[col])
        except (TypeError, ValueError):
            errors[col] = f"non-numeric value {cells[col]!r}"
            continue
        if value is None:
            continue
        f = schema.BY_KEY[key]
        if key in PERCENT_KEYS and 1 < value <= 100:
            warnings.append(f"{f.name} {value:g} read as {value:g} % ({value / 100:g} as a fraction)")
            value /= 100
        if not f.low <= value <= f.high:
            shown = "%" if key in PERCENT_KEYS else f.unit
            low, high = (f.low * 100, f.high * 100) if key in PERCENT_KEYS else (f.low, f.high)
            hint = plausible_reading(key, value)
            message = f"impossible value {value:g} (plausible {low:g}-{high:g} {shown}){'; ' + hint if hint else ''}"
            if strict:
                errors[col] = message
            else:
                warnings.append(f"{f.name} left out (read as not measured): {message}")
            continue
        values[key] = value
    return values, errors, warnings


def field_errors(cells: dict[str, object], mapping: dict[str, str] | None = None,
                 strict: bool = True) -> dict[str, str]:
    """Per input name, what is wrong with its value (`read_values`; strict by default: a value
    outside the plausible range is an error)."""
    return read_values(cells, mapping, strict)[1]


def available_groups(present: set[str]) -> set[int]:
    return {g for g in schema.GROUP_NAMES if len(present & set(schema.group_features(g))) >= MIN_PRESENT[g]}


def choose_combination(present: set[str]) -> str | None:
    """The first platform combination whose groups are all available, or None."""
    groups = available_groups(present)
    for code in schema.COMBINATIONS:
        if set(schema.combination_groups(code)) <= groups:
            return code
    return None


def check_row(cells: dict[str, object], strict: bool = False) -> RowInput:
    """Validate one row of cells (input name -> raw value; `read_values`) and choose its combination."""
    mapping, ignored, _ = resolve_columns(cells)
    values, errors, read_warnings = read_values(cells, mapping, strict)
    if errors:
        return RowInput(error="; ".join(f"{col}: {msg}" for col, msg in errors.items()), field_errors=errors)
    code = choose_combination(set(values))
    if code is None:
        counts = ", ".join(f"{len(set(values) & set(schema.group_features(g)))}/{GROUP_SIZES[g]} "
                           f"{schema.GROUP_NAMES[g]}" for g in schema.GROUP_NAMES)
        return RowInput(values, warnings=read_warnings,
                        error=f"nothing usable: no factor combination available (present {counts}; "
                              f"a group needs half of its factors)", read=values)
    needed = schema.select_features("none", code)
    out = RowInput({k: v for k, v in values.items() if k in needed}, code, warnings=read_warnings, read=values)
    out.warnings += [f"{col}: {IGNORED[name_lookup()[normal_name(col)]]}" for col in ignored
                     if str(cells[col]).strip().lower() not in MISSING_TOKENS]  # None, NaN, blank: silent
    if code != schema.COMBINATIONS[0]:
        out.warnings.append(f"combination {code} used: not every factor group is available")
    imputed = [schema.BY_KEY[k].name for k in needed if k not in values and k not in IGNORED]
    if imputed:
        out.warnings.append(f"imputed from training medians: {', '.join(imputed)}")
    return out


def model_frame(rows: list[RowInput], features: tuple[str, ...]) -> pd.DataFrame:
    """Rows as the model's input frame: the given factor keys, NaN where missing."""
    return pd.DataFrame([[r.values.get(k, np.nan) for k in features] for r in rows], columns=list(features),
                        dtype=float)
