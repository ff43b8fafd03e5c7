"""A clinician's input: column names, numbers, plausible values, and which factor combination a
row can use. Shared by `prcrs predict`, the web API and the MLflow pyfunc models.

A factor group counts as available when at least half of its factors (rounded up) are present:
5 of 9 (coagulation and tumour load), 5 of 10 (blood routine), 8 of 16 (biochemistry), 4 of 7
(cytokines). A row uses the first combination in the platform's order (1234 > 123 > 4 > 23 > 3
> 2) whose groups are all available; its other factors are imputed from the training medians.
"""

from __future__ import annotations

import math
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


def resolve_columns(columns) -> tuple[dict[str, str], list[str], list[str]]:
    """(input column -> factor key, the IGNORED factors' columns, the unknown columns). Names
    are the published sheet's or the project's keys, in any case; other known sheet columns
    (patient, day, CRS, ...) are in none of the three."""
    lookup = column_lookup()
    mapping, ignored, unknown = {}, [], []
    for col in columns:
        key = lookup.get(str(col).strip().lower())
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


def field_errors(cells: dict[str, object], mapping: dict[str, str] | None = None) -> dict[str, str]:
    """Per input name, what is wrong with its value (non-numeric or outside the plausible range);
    `mapping` is `resolve_columns(cells)[0]` when the caller has it."""
    mapping = resolve_columns(cells)[0] if mapping is None else mapping
    errors = {name: f"{key} is also given as {', '.join(repr(n) for n in names if n != name)}: give one value"
              for key, names in same_factor(mapping).items() for name in names}
    for col, key in mapping.items():
        if col in errors:
            continue
        try:
            value = _number(cells[col])
        except (TypeError, ValueError):
            errors[col] = f"non-numeric value {cells[col]!r}"
            continue
        f = schema.BY_KEY[key]
        if value is not None and not f.low <= value <= f.high:
            errors[col] = f"impossible value {value:g} (plausible {f.low:g}-{f.high:g} {f.unit})"
    return errors


def available_groups(present: set[str]) -> set[int]:
    return {g for g in schema.GROUP_NAMES if len(present & set(schema.group_features(g))) >= MIN_PRESENT[g]}


def choose_combination(present: set[str]) -> str | None:
    """The first platform combination whose groups are all available, or None."""
    groups = available_groups(present)
    for code in schema.COMBINATIONS:
        if set(schema.combination_groups(code)) <= groups:
            return code
    return None


def check_row(cells: dict[str, object]) -> RowInput:
    """Validate one row of cells (input name -> raw value) and choose its combination."""
    mapping, ignored, _ = resolve_columns(cells)
    errors = field_errors(cells, mapping)
    if errors:
        return RowInput(error="; ".join(f"{col}: {msg}" for col, msg in errors.items()), field_errors=errors)
    values = {key: v for col, key in mapping.items() if (v := _number(cells[col])) is not None}
    code = choose_combination(set(values))
    if code is None:
        counts = ", ".join(f"{len(set(values) & set(schema.group_features(g)))}/{GROUP_SIZES[g]} "
                           f"{schema.GROUP_NAMES[g]}" for g in schema.GROUP_NAMES)
        return RowInput(values, error=f"nothing usable: no factor combination available (present {counts}; "
                                      f"a group needs half of its factors)", read=values)
    needed = schema.select_features("none", code)
    out = RowInput({k: v for k, v in values.items() if k in needed}, code, read=values)
    lookup = column_lookup()
    out.warnings += [f"{col}: {IGNORED[lookup[str(col).strip().lower()]]}" for col in ignored
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
