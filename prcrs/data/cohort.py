"""Cohorts: the CAR-T and COVID-19 sheets (or the synthetic cohort) as one tidy frame each.

A cohort frame has one row per patient-day (CAR-T) or per sample (COVID-19), the columns
`patient` (0-based int), `day`, `female`, `age`, the other available columns, the 42 factor
keys of `prcrs.schema` (in CAR-T units, missing as NaN) and the target: `grade` (CRS 0-4) for
CAR-T, `severity` (0-2) for COVID-19.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prcrs import schema, units
from prcrs.data.fingerprint import fill_values
from prcrs.data.io import read_table, to_numeric
from prcrs.errors import DataError

CART_FILE = "CAR-T.xlsx"
COVID_FILE = "COVID-19.xlsx"
DATA_ENV = "PRCRS_DATA_DIR"


@dataclass
class Cohort:
    frame: pd.DataFrame
    kind: str  # "cart" or "covid"
    source: str  # "synthetic" or the file it was read from
    label_imputed: bool = True  # missing cells filled by grade (the published sheet): `fill_values` are masked
    synthetic: bool = False  # a made-up site export (`prcrs example-site`), though read from a file
    site: str | None = None  # the site a site's export names (its mapping's `site`)

    @property
    def target(self) -> str:
        return "grade" if self.kind == "cart" else "severity"

    @property
    def n_patients(self) -> int:
        return int(self.frame["patient"].nunique())

    @property
    def content_id(self) -> str:
        """Short hash of the cohort's values: runs on other data never pass for each other."""
        values = pd.util.hash_pandas_object(self.frame, index=False).to_numpy()
        return hashlib.sha1(values.tobytes()).hexdigest()[:12]

    @property
    def severe(self) -> np.ndarray:
        """(n,) bool: severe on the row's day (CRS grade >= 3; COVID-19 severity 2)."""
        return self.frame[self.target].to_numpy(int) >= (schema.SEVERE_GRADE if self.kind == "cart" else 2)

    @functools.cached_property
    def fill_values(self) -> dict[str, tuple[float, ...]]:
        """Each factor's label-imputation fill values: its per-target-level medians over every row
        (`prcrs.data.fingerprint`). Computed once from the whole sheet, as the authors did. Empty
        for a cohort that was not label-imputed (a site's export): its values are measurements."""
        if not self.label_imputed:
            return {}
        return fill_values(self.frame[list(schema.FEATURE_KEYS)], self.frame[self.target].to_numpy())

    @property
    def data_source(self) -> str:
        """Short tag for run records: 'real' or 'synthetic'."""
        return "synthetic" if self.source == "synthetic" or self.synthetic else "real"


@functools.cache
def column_lookup() -> dict[str, str]:
    """Accepted input column name (lower case) -> project key: sheet names and own keys (built
    once; do not mutate)."""
    lookup = {}
    for f in schema.FEATURES:
        lookup[f.column.lower()] = f.key
        lookup[f.key] = f.key
    for e in schema.EXTRAS:
        lookup[e.column.lower()] = e.key
        lookup[e.key] = e.key
    lookup.update({"sex": "sex", "female": "female", "patient": "patient", "crs": "grade", "grade": "grade"})
    return lookup


def same_factor(mapping: dict[str, str]) -> dict[str, list[str]]:
    """Key -> the input names that all name it, where more than one does ({"IL6": "il6",
    "il6": "il6"} -> {"il6": ["IL6", "il6"]}): two values for one factor, which is an error."""
    names: dict[str, list[str]] = {}
    for name, key in mapping.items():
        names.setdefault(key, []).append(str(name))
    return {key: found for key, found in names.items() if len(found) > 1}


def check_one_name_per_factor(mapping: dict[str, str], source: str) -> None:
    """DataError naming the first factor that two input columns both name."""
    clashes = same_factor(mapping)
    if clashes:
        key, names = next(iter(clashes.items()))
        raise DataError(f"{source}: columns {' and '.join(repr(n) for n in names)} both give {key}: keep one")


def _rename(frame: pd.DataFrame, lookup: dict[str, str], source: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rename accepted column names to keys; also return key -> the name the file used. Two
    columns naming one key are a DataError."""
    mapping = {c: lookup[c.lower()] for c in frame.columns if c.lower() in lookup}
    check_one_name_per_factor(mapping, source)
    return frame.rename(columns=mapping), {k: c for c, k in mapping.items()}


def _require(frame: pd.DataFrame, keys: list[str], names: dict[str, str], source: str) -> None:
    missing = [names.get(k, k) for k in keys if k not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing required column(s): {', '.join(missing)}")


def _check_values(frame: pd.DataFrame, keys: list[str], source: str, display: dict[str, str]) -> None:
    """Negative lab values are impossible: name the first one."""
    values = frame[keys]
    negative = (values < 0).to_numpy()
    if negative.any():
        r, c = np.argwhere(negative)[0]
        raise DataError(
            f"{source}: negative value {values.iat[r, c]} in column {display.get(keys[c], keys[c])!r} at row "
            f"{values.index[r]} ({int(negative.sum())} negative cell(s) in all)"
        )


def _female(sex: pd.Series, source: str) -> pd.Series:
    text = sex.astype(str).str.strip().str.lower()
    out = text.map({"female": 1.0, "f": 1.0, "male": 0.0, "m": 0.0, "1": 1.0, "0": 0.0})
    bad = out.isna() & sex.notna() & ~text.isin({"", "nan", "none"})
    if bad.any():
        row = bad[bad].index[0]
        raise DataError(f"{source}: sex must be female or male, got {sex[row]!r} at row {row}")
    return out


FIRST_DAY = 0  # every patient of the published sheet starts on the infusion day, day 0


def segment_patients(day: pd.Series, source: str = "data") -> np.ndarray:
    """Patient number per row, for a file with no patient column: a new patient starts where the
    relative day does not increase, and every patient starts at day 0. A patient that would start
    on another day means unsorted or repeated days, which would cut one patient into false ones
    (and put one patient's days on both sides of a fold): a DataError naming the file row (the
    series' index)."""
    rows, day = day.index, day.to_numpy(float)
    starts = np.r_[True, day[1:] <= day[:-1]]
    late = np.flatnonzero(starts & (day != FIRST_DAY))
    if len(late):
        i = late[0]
        raise DataError(f"{source}: with no patient column, a patient starts where the day does not increase and "
                        f"must start at day {FIRST_DAY}, but at row {rows[i]} one would start at day {day[i]:g}: "
                        "sort each patient's days, or add a patient column")
    return np.cumsum(starts) - 1


def tidy_cart(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate a raw CAR-T frame (sheet or project column names) and tidy it."""
    keys = list(schema.FEATURE_KEYS)
    frame, used = _rename(raw, column_lookup(), source)
    names = {f.key: f.column for f in schema.FEATURES} | {"day": schema.DAY_COLUMN, "grade": "CRS"} | used
    _require(frame, ["day", "grade", *keys], names, source)
    extras = [e.key for e in schema.EXTRAS if e.key in frame.columns and e.key != "day"]
    numeric = ["day", "grade", *keys, *extras]
    frame = to_numeric(frame, numeric, source, names)
    for col in ("day", "grade", *(["patient"] if "patient" in frame.columns else [])):
        blank = frame[col].isna()
        if blank.any():
            raise DataError(f"{source}: column {names[col]!r} is empty at row {blank[blank].index[0]}")
    _check_values(frame, ["day", *keys, *extras], source, names)
    bad_grade = ~frame["grade"].isin([0, 1, 2, 3, 4])
    if bad_grade.any():
        row = bad_grade[bad_grade].index[0]
        raise DataError(f"{source}: CRS grade must be 0-4, got {frame.at[row, 'grade']} at row {row}")
    if "patient" in frame.columns:  # an explicit id: each patient's days in order, wherever they stand
        frame = frame.assign(_id=pd.factorize(frame["patient"])[0]).sort_values(["_id", "day"], kind="stable")
        patient = frame["_id"].to_numpy()
    else:
        patient = segment_patients(frame["day"], source)
    patients_from = "patient column" if "patient" in frame.columns else f"day restarts (each at day {FIRST_DAY})"
    out = pd.DataFrame({"patient": patient, "day": frame["day"].astype(int).to_numpy()}, index=frame.index)
    out["female"] = _female(frame["sex"], source) if "sex" in frame.columns else np.nan
    for key in extras:
        out[key] = frame[key]
    out[keys] = frame[keys]
    out["grade"] = frame["grade"].astype(int)
    empty = out[keys].isna().all(axis=1).groupby(out["patient"]).all()
    if empty.any():
        p = int(empty[empty].index[0])
        rows = out.index[out["patient"] == p]
        raise DataError(f"{source}: empty patient: no lab value on any day, rows {rows[0]}-{rows[-1]}")
    duplicate = out.duplicated(["patient", "day"])
    if duplicate.any():
        raise DataError(f"{source}: day {out.loc[duplicate, 'day'].iloc[0]} repeated for one patient "
                        f"at row {duplicate[duplicate].index[0]}")
    out = out.reset_index(drop=True)
    out.attrs["patients_from"] = patients_from  # for the audit
    return out


def load_cart(path: str | Path) -> Cohort:
    """Load the published CAR-T sheet (or a csv/parquet file with the same columns)."""
    path = Path(path)
    raw = read_table(path, header_markers=((schema.DAY_COLUMN, "day"), (schema.GRADE_COLUMN, "grade")))
    frame = tidy_cart(raw, path.name)
    return Cohort(frame, "cart", str(path))


COVID_SUBJECT = "Add topic"
COVID_TARGET = "Maximum severity"
COVID_AGE = "Maximum age of subject"


def covid_column_keys() -> dict[str, str]:
    """COVID-19 sheet column -> project key, for every lab column shared with CAR-T by name."""
    lookup = {f.column: f.key for f in schema.FEATURES}
    lookup.update(schema.COVID_ALIASES)
    return lookup


def load_covid(path: str | Path, convert_units: bool = True) -> Cohort:
    """Load the COVID-19 sheet, aligned to the CAR-T schema.

    The frame carries all 42 factor columns in CAR-T position; columns the COVID sheet lacks,
    and shared-by-name columns that are not the same quantity (`schema.COVID_EXCLUDED`), are
    NaN. With `convert_units`, US units are converted to CAR-T units
    (`prcrs.units.COVID_UNITS`).
    """
    path = Path(path)
    return tidy_covid(read_table(path, header_markers=((COVID_SUBJECT,), (COVID_TARGET,))), path, convert_units)


def load_file(path: str | Path) -> Cohort:
    """A CAR-T or COVID-19 file, read once and told apart by its header ('Add topic' = COVID-19)."""
    path = Path(path)
    raw = read_table(path, header_markers=((schema.DAY_COLUMN, "day", COVID_SUBJECT),))
    if COVID_SUBJECT in raw.columns:
        return tidy_covid(raw, path)
    return Cohort(tidy_cart(raw, path.name), "cart", str(path))


def tidy_covid(raw: pd.DataFrame, path: Path, convert_units: bool = True) -> Cohort:
    """Validate a raw COVID-19 frame and align it to the CAR-T schema (see `load_covid`)."""
    lookup = covid_column_keys()
    labs = [c for c in raw.columns if c in lookup]
    if not labs:
        raise DataError(f"{path.name}: no lab column shared with the CAR-T sheet")
    _require(raw, [COVID_SUBJECT, COVID_TARGET], {}, path.name)
    numeric = [*labs, COVID_TARGET] + ([COVID_AGE] if COVID_AGE in raw.columns else [])
    raw = to_numeric(raw, numeric, path.name)
    _check_values(raw, labs, path.name, {})
    blank = raw[COVID_TARGET].isna() | raw[COVID_SUBJECT].isna()
    if blank.any():
        raise DataError(f"{path.name}: subject or severity missing at row {blank[blank].index[0]}")
    out = pd.DataFrame({"patient": pd.factorize(raw[COVID_SUBJECT])[0]}, index=raw.index)
    out["day"] = out.groupby("patient").cumcount()
    out["female"] = _female(raw["sex"], path.name) if "sex" in raw.columns else np.nan
    out["age"] = raw[COVID_AGE] if COVID_AGE in raw.columns else np.nan
    for key in schema.FEATURE_KEYS:
        out[key] = np.nan
    for col in labs:
        out[lookup[col]] = raw[col]
    for key in set(schema.FEATURE_KEYS) - set(schema.COVID_SHARED):
        out[key] = np.nan
    if convert_units:
        for key in units.COVID_UNITS:
            out[key] = out[key] * units.covid_factor(key)
    out["severity"] = raw[COVID_TARGET].astype(int)
    return Cohort(out.reset_index(drop=True), "covid", str(path))
