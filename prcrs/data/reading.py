"""A clinician's input: column names and units, cells, plausible values, and which factor
combination a row can use. Shared by `prcrs predict`, the web API and the MLflow pyfunc models.

The reading rules, in order (README "Prediction platform" has them as a table):

- Names: the published sheet's, the project's keys and the page's labels are accepted, ignoring
  case, spaces and punctuation ('IL-6', 'il6', 'IFN-gamma', 'IFNγ').
- Units: a unit in brackets after a name ('IL-6 (ng/mL)') or after a number in a cell ('35 pg/mL')
  is converted to the schema's unit by `prcrs.units`; an unknown unit refuses the column (a
  header) or leaves out the value (a cell), in one line naming it. Without a unit, the schema's.
- Percentages (`PERCENT_KEYS`): decided once per column. A '%' or 'fraction' unit says it;
  otherwise a column with a value above 1 holds percentages, and a column whose values are all at
  most 1 is read as fractions with a warning naming it (its values cannot tell).
- Censored values: '<5' and '>1000' are read at their bound, with a warning.
- Decimal commas: '5,2' is 5.2; '1,000' (a comma before three digits) is ambiguous and not read.
- A cell that still cannot be read leaves out that factor with a warning; `unreadable="error"`
  (the API) or `strict=True` refuses the row instead, naming the cell.
- A value outside its plausible range is left out with a warning naming it and, where a common
  other unit or a misplaced decimal point would make it plausible, which; `strict=True` refuses.

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

from prcrs import schema, units
from prcrs.data.cohort import column_lookup, same_factor
from prcrs.data.io import MISSING_TOKENS
from prcrs.errors import DataError

# Factors the platform does not read: its models saw them, so they are imputed like a missing value.
IGNORED = {"chloride": "not used: the published sheet's 'chlorine' (about 15 on most days) is not chloride "
                       "in mmol/L, so a real chloride value would mislead the model"}
GROUP_SIZES = {g: len(schema.group_features(g)) for g in schema.GROUP_NAMES}
PERCENT_KEYS = {f.key for f in schema.FEATURES if f.unit == "fraction"}  # stored as fractions, often typed as %
_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "µ": "u", "μ": "u"}
MIN_PRESENT = {g: math.ceil(n / 2) for g, n in GROUP_SIZES.items()}
_UNIT_IN_HEADER = re.compile(r"^(?P<name>.*?)\s*[\(\[](?P<unit>[^\)\]]*)[\)\]]\s*$")
_CELL = re.compile(r"^(?P<bound><=|>=|<|>|≤|≥)?\s*(?P<number>[+-]?(?:\d[\d,]*(?:\.\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?)"
                   r"\s*(?P<unit>[^\d.,\s].*)?$")
_PLAIN = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")  # a number alone, as _CELL reads it


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
    read_warnings: list[str] = field(default_factory=list)  # those about the values themselves (units, left out)


@dataclass(frozen=True)
class ColumnReading:
    """How one input column is read: its factor, the unit its header gives (None: the schema's),
    the factor to the schema's unit, and for a percentage factor whether values are percentages."""

    name: str
    key: str
    unit: str | None = None
    factor: float = 1.0
    percent: bool = False


@dataclass
class Columns:
    """An input's columns: how each factor column is read, the IGNORED factors' columns, the
    unknown ones, and notes on the reading that hold for the whole input (said once)."""

    readings: dict[str, ColumnReading]
    ignored: list[str]
    unknown: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def mapping(self) -> dict[str, str]:
        return {name: r.key for name, r in self.readings.items()}

    @functools.cached_property
    def clashes(self) -> dict[str, list[str]]:
        """Factor key -> the input names that all name it, where more than one does (`same_factor`)."""
        return same_factor(self.mapping)


def normal_name(name) -> str:
    """A column name as compared: lower case, Greek letters spelled out, a trailing unit in
    brackets dropped, only letters and digits kept ('IFN-γ (pg/mL)' -> 'ifngamma')."""
    text = "".join(_GREEK.get(c, c) for c in str(name).strip().lower())
    text = re.sub(r"\s*[\(\[][^\)\]]*[\)\]]\s*$", "", text)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isalnum())


def header_unit(name) -> str | None:
    """The unit in brackets at the end of a column name ('IL-6 (ng/mL)' -> 'ng/mL'), or None."""
    found = _UNIT_IN_HEADER.match(str(name).strip())
    return found["unit"].strip() or None if found else None


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


@dataclass(frozen=True)
class Cell:
    """A cell as read: its number (None: blank), a censoring bound ('<' or '>') and a unit written
    after the number."""

    value: float | None
    bound: str | None = None
    unit: str | None = None


def parse_cell(raw) -> Cell:
    """A cell as a `Cell`; ValueError saying why when it is not a number ('<5' -> 5 censored,
    '35 pg/mL' -> 35 with its unit, '5,2' -> 5.2; '1,000' is ambiguous; a date is no number)."""
    if type(raw) is float and not math.isinf(raw):  # the common cell: a number, or NaN for a blank
        return Cell(None if math.isnan(raw) else raw)
    if type(raw) is str and _PLAIN.fullmatch(raw):  # the common cell of a file: a plain number
        return Cell(float(raw))
    if raw is None or (not isinstance(raw, str) and pd.api.types.is_scalar(raw) and pd.isna(raw)):
        return Cell(None)  # None, NaN, pandas' NA and NaT
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float, np.integer, np.floating)):
        raise ValueError(f"non-numeric value {raw!r}")
    if not isinstance(raw, str):
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(f"non-numeric value {raw!r}")
        return Cell(value)
    text = raw.strip()
    if text.lower() in MISSING_TOKENS:
        return Cell(None)
    found = _CELL.match(text)
    if found is None:
        raise ValueError(f"non-numeric value {raw!r}")
    number = found["number"]
    if "," in number:
        if "." in number or re.fullmatch(r"[+-]?[1-9]\d{0,2}(,\d{3})+", number):
            if "." not in number:
                raise ValueError(f"ambiguous value {raw!r}: a decimal comma or a thousands separator? write "
                                 f"{number.replace(',', '.')} or {number.replace(',', '')}")
            number = number.replace(",", "")  # '1,234.5': a thousands separator
        elif number.count(",") == 1:
            number = number.replace(",", ".")  # '5,2': a decimal comma
        else:
            raise ValueError(f"non-numeric value {raw!r}")
    bound = {"≤": "<", "<=": "<", "≥": ">", ">=": ">"}.get(found["bound"], found["bound"])
    return Cell(float(number), bound, (found["unit"] or "").strip() or None)


def read_columns(names, samples: dict[str, list] | None = None) -> Columns:
    """How each input column is read (see the module's rules). `samples`: column -> its cells,
    which decide a percentage column's convention (none given: one value at a time). DataError,
    in one line naming the column, for a header unit its factor does not have."""
    mapping, ignored, unknown = resolve_columns(names)
    readings, notes = {}, []
    for name, key in mapping.items():
        unit = header_unit(name)
        f = schema.BY_KEY[key]
        try:
            factor = 1.0 if unit is None else units.factor(key, unit)
        except DataError as exc:
            raise DataError(f"column {name!r}: {exc}; write the value in one of those units") from None
        if unit is not None and units.assumption(key, unit):
            notes.append(f"{name!r}: {units.assumption(key, unit)}")
        percent = False
        if key in PERCENT_KEYS:
            if unit is not None:
                percent = units.normal_unit(unit) == "%"
                numbers = _plain_numbers((samples or {}).get(name, []))
                if percent and numbers and 0 < max(numbers) <= 1:
                    notes.append(f"{name!r} ({f.name}): read as percentages, as its header says, though every value "
                                 "is at most 1 (0.85 = 0.85 %); a spreadsheet cell formatted as % holds 0.85 for "
                                 f"85 %: if so, write '{f.name} (fraction)'")
            else:
                percent, note = _percent_convention(name, f, (samples or {}).get(name, []))
                if note:
                    notes.append(note)
            factor = 1.0
        readings[name] = ColumnReading(name, key, unit, factor, percent)
    return Columns(readings, ignored, unknown, notes)


def _percent_convention(name: str, f: schema.Feature, cells: list) -> tuple[bool, str | None]:
    """(whether a percentage column without a unit holds percentages, a note or None), from its
    numbers that carry no unit of their own: any above 1 -> percentages; all at most 1 -> fractions,
    with a note naming the column, since such values could be either."""
    numbers = _plain_numbers(cells)
    if not numbers:
        return False, None
    if max(numbers) > 1:
        if min(numbers) <= 1:
            return True, (f"{name!r} ({f.name}): read as percentages, since some values are above 1 (0.8 = 0.8 %); "
                          "write the unit in the header to say otherwise, e.g. '" + f.name + " (fraction)'")
        return True, None
    if max(numbers) > 0:
        return False, (f"{name!r} ({f.name}): every value is at most 1, so it is read as fractions (0.8 = 80 %); if "
                       f"these are percentages, say so in the header: '{f.name} (%)'")
    return False, None


def _plain_numbers(cells: list) -> list[float]:
    """The numbers of `cells` that carry no unit of their own (unreadable and blank cells left out)."""
    numbers = []
    for raw in cells:
        try:
            cell = parse_cell(raw)
        except ValueError:
            continue
        if cell.value is not None and cell.unit is None:
            numbers.append(cell.value)
    return numbers


def plausible_reading(key: str, value: float) -> str:
    """What would make an implausible `value` of factor `key` plausible: another common unit or
    a misplaced decimal point; '' when nothing does."""
    f = schema.BY_KEY[key]
    for unit, factor in units.other_units(key).items():
        if key not in PERCENT_KEYS and f.low <= value * factor <= f.high:
            return f"likely in {unit} ({value:g} {unit} = {value * factor:.3g} {f.unit})"
    for shift in (10, 0.1, 100, 0.01):
        if value > 0 and f.low <= value * shift <= f.high:
            return f"a misplaced decimal point? ({value * shift:.3g} {f.unit} would be plausible)"
    return ""


def _in_schema_units(reading: ColumnReading, cell: Cell) -> float:
    """A parsed cell's value in the schema's unit, by the cell's own unit or else its column's;
    DataError for a cell unit its factor does not have."""
    key = reading.key
    if cell.unit is not None:
        if key in PERCENT_KEYS:
            if units.normal_unit(cell.unit) not in {"%", "fraction"}:
                raise DataError(f"unknown unit {cell.unit!r} for {label(key)} (known: %, fraction)")
            return cell.value / 100 if units.normal_unit(cell.unit) == "%" else cell.value
        return cell.value * units.factor(key, cell.unit)
    if key in PERCENT_KEYS:
        return cell.value / 100 if reading.percent else cell.value
    return cell.value * reading.factor


def read_values(cells: dict[str, object], columns: Columns | None = None, strict: bool = False,
                unreadable: str = "drop") -> tuple[dict[str, float], dict[str, str], list[str]]:
    """(factor key -> value in schema units, input name -> what is wrong, warnings) of one row,
    by the module's rules; `columns` default: `read_columns` of this row alone.

    Two names for one factor are errors. A cell that cannot be read is left out with a warning
    (`unreadable="drop"`) or is an error (`"error"`, or `strict`). A value outside its plausible
    range is an error under `strict`, else it is left out with a warning (`plausible_reading`).
    Messages name the input's own column name and the factor's page label."""
    columns = read_columns(cells, {k: [v] for k, v in cells.items()}) if columns is None else columns
    errors = {name: f"{label(key)} is also given as {', '.join(repr(n) for n in names if n != name)}: give one value"
              for key, names in columns.clashes.items() for name in names}
    values, warnings = {}, []
    for col, reading in columns.readings.items():
        if col in errors or col not in cells:
            continue
        key, f = reading.key, schema.BY_KEY[reading.key]
        try:
            cell = parse_cell(cells[col])
            if cell.value is None:
                continue
            value = _in_schema_units(reading, cell)
        except (TypeError, ValueError, DataError) as exc:
            message = str(exc) if str(exc) else f"non-numeric value {cells[col]!r}"
            if strict or unreadable == "error":
                errors[col] = message
            else:
                warnings.append(f"{f.name} left out (read as not measured): {message}")
            continue
        if cell.bound is not None:
            shown = f"{100 * value:g} %" if key in PERCENT_KEYS else f"{value:g} {f.unit}"
            warnings.append(f"{f.name} {str(cells[col]).strip()!r} read at its bound, {shown} (a censored value: "
                            f"the true value is {'lower' if cell.bound == '<' else 'higher'})")
        if not f.low <= value <= f.high:
            shown = "%" if key in PERCENT_KEYS else f.unit
            low, high = (f.low * 100, f.high * 100) if key in PERCENT_KEYS else (f.low, f.high)
            given = value * 100 if key in PERCENT_KEYS else value
            hint = plausible_reading(key, value)
            message = f"impossible value {given:g} (plausible {low:g}-{high:g} {shown}){'; ' + hint if hint else ''}"
            if strict:
                errors[col] = message
            else:
                warnings.append(f"{f.name} left out (read as not measured): {message}")
            continue
        values[key] = value
    return values, errors, warnings


def field_errors(cells: dict[str, object], columns: Columns | None = None, strict: bool = True) -> dict[str, str]:
    """Per input name, what is wrong with its value (`read_values`; strict by default: a value
    outside the plausible range or a cell that cannot be read is an error)."""
    return read_values(cells, columns, strict, "error")[1]


def available_groups(present: set[str]) -> set[int]:
    return {g for g in schema.GROUP_NAMES if len(present & set(schema.group_features(g))) >= MIN_PRESENT[g]}


def choose_combination(present: set[str], combinations=schema.COMBINATIONS) -> str | None:
    """The first platform combination (of `combinations`: those a release has models for) whose
    groups are all available, or None."""
    groups = available_groups(present)
    for code in (c for c in schema.COMBINATIONS if c in combinations):
        if set(schema.combination_groups(code)) <= groups:
            return code
    return None


def cohort_combinations(values: pd.DataFrame, share: float = 0.5) -> list[str]:
    """The platform combinations, in order, that at least `share` of the rows of `values`
    (patient-days; factor keys as columns, NaN where not measured) can use: each of its groups
    available on the day (`available_groups`)."""
    present = values.notna()
    usable = []
    for code in schema.COMBINATIONS:
        ok = np.ones(len(values), bool)
        for g in schema.combination_groups(code):
            keys = [k for k in schema.group_features(g) if k in present.columns]
            ok &= present[keys].sum(axis=1).to_numpy() >= MIN_PRESENT[g]
        if len(values) and ok.mean() >= share:
            usable.append(code)
    return usable


def check_row(cells: dict[str, object], strict: bool = False, columns: Columns | None = None,
              unreadable: str = "drop", combinations=schema.COMBINATIONS) -> RowInput:
    """Validate one row of cells (input name -> raw value; `read_values`) and choose its combination
    among `combinations` (those a release has models for). `columns`: how the input's columns
    are read (`read_columns`; default: this row alone, whose notes are then the row's warnings)."""
    own = columns is None
    columns = read_columns(cells, {k: [v] for k, v in cells.items()}) if own else columns
    values, errors, read_warnings = read_values(cells, columns, strict, unreadable)
    read_warnings = (columns.notes if own else []) + read_warnings
    if errors:
        return RowInput(error="; ".join(f"{col}: {msg}" for col, msg in errors.items()), field_errors=errors)
    code = choose_combination(set(values), combinations)
    said = list(read_warnings)
    if code is None:
        counts = ", ".join(f"{len(set(values) & set(schema.group_features(g)))}/{GROUP_SIZES[g]} "
                           f"{schema.GROUP_NAMES[g]}" for g in schema.GROUP_NAMES)
        return RowInput(values, warnings=read_warnings,
                        error=f"nothing usable: no factor combination available (present {counts}; "
                              f"a group needs half of its factors)", read=values, read_warnings=said)
    needed = schema.select_features("none", code)
    out = RowInput({k: v for k, v in values.items() if k in needed}, code, warnings=read_warnings, read=values,
                   read_warnings=said)
    out.warnings += [f"{col}: {IGNORED[name_lookup()[normal_name(col)]]}" for col in columns.ignored
                     if col in cells and str(cells[col]).strip().lower() not in MISSING_TOKENS]  # blank: silent
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
