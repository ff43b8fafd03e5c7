"""A site's lab export as patient-days, whatever its form: wide (one row per draw or day, one
column per lab), long (one row per lab value: patient, day or time, lab, value, optional unit)
or MEDS (`data/*.parquet`: subject_id, time, code, numeric_value).

Every form goes through the reading rules of `prcrs.data.reading`, the ones `prcrs predict`
applies (names, units in headers, cells or a unit column, percentages decided once per lab and
unit, censored values, decimal commas, plausible ranges), and several values of one factor on
one day become one by the mapping's `same_day` rule (`prcrs.data.mapping`). The result is one
table of patient-days in the schema's units (`PatientDays.table`), which `prcrs predict`,
`prcrs validate`, `prcrs recalibrate`, `run.py` and `prcrs train-final` all read. The patient
ids of the export stay in that table, for the user's own output; a cohort (`PatientDays.cohort`)
numbers patients 0, 1, ... and keeps no id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from prcrs import schema
from prcrs.data.cohort import Cohort
from prcrs.data.mapping import GRADE, SiteMapping
from prcrs.data.reading import name_lookup, normal_name, read_columns, read_values
from prcrs.errors import DataError

FORMS = ("wide", "long", "meds")
PATIENT, DAY, GRADE_COLUMN, SITE = "patient", schema.DAY_COLUMN, schema.GRADE_COLUMN, "site"
DAY_SECONDS = 86400.0


def header(key: str) -> str:
    """The column of factor `key` in a `PatientDays` table: its key and schema unit ('il6 (pg/mL)')."""
    return f"{key} ({schema.BY_KEY[key].unit})"


@dataclass
class PatientDays:
    """An export read: `table` has one row per patient-day, sorted by patient (in order of first
    appearance) and day: `patient` (the export's id), `Relative date` (whole days since
    infusion), one column per factor read (`header`: values in the schema's units), `CRS` (the
    day's highest grade) when the export has grades, `site` when it has a site column."""

    table: pd.DataFrame
    form: str
    source: str  # the export's file or folder name (never logged: content ids are)
    notes: list[str] = field(default_factory=list)
    synthetic: bool = False
    site: str | None = None

    @property
    def factors(self) -> list[str]:
        """The factor keys with at least one value."""
        keys = {c: c.partition(" (")[0] for c in self.table.columns}
        return [k for c, k in keys.items() if k in schema.BY_KEY and self.table[c].notna().any()]

    @property
    def graded(self) -> bool:
        return GRADE_COLUMN in self.table.columns and self.table[GRADE_COLUMN].notna().any()

    def cohort(self) -> Cohort:
        """The export as a training or validation cohort: patients numbered by first appearance,
        every factor column (NaN where not measured), the grade; days without a grade are left
        out (a note says how many). Not label-imputed: no value is ever masked as a fill value."""
        if not self.graded:
            raise DataError(f"{self.source}: no CRS grade found (a '{GRADE_COLUMN}' column, or the mapping's `grade`): "
                            "training and validation need the grade of each day")
        graded = self.table[GRADE_COLUMN].notna().to_numpy()
        table = self.table[graded]
        dropped = len(self.table) - len(table)
        if dropped:
            self.notes.append(f"{dropped} patient-day(s) without a CRS grade left out of the cohort")
        number = pd.factorize(self.table[PATIENT])[0][graded]  # by first appearance in the whole export
        frame = pd.DataFrame({"patient": number, "day": table[DAY].to_numpy(int), "female": np.nan, "age": np.nan})
        if SITE in table.columns:
            frame[SITE] = table[SITE].astype(str).to_numpy()
        for key in schema.FEATURE_KEYS:
            frame[key] = table[header(key)].to_numpy(float) if header(key) in table.columns else np.nan
        frame["grade"] = table[GRADE_COLUMN].to_numpy(int)
        return Cohort(frame.reset_index(drop=True), "cart", self.source, label_imputed=False,
                      synthetic=self.synthetic, site=self.site)


def form_of(columns, mapping: SiteMapping) -> str:
    """'long' when the columns hold the mapping's lab and value columns, else 'wide'."""
    return "long" if {mapping.lab, mapping.value} <= set(map(str, columns)) else "wide"


def _is_meds_file(path: Path) -> bool:
    """A parquet file with MEDS's subject and code columns."""
    if path.suffix.lower() not in {".parquet", ".pq"}:
        return False
    import meds
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    return {meds.DataSchema.subject_id_name, meds.DataSchema.code_name} <= names


def read_export(path: str | Path, mapping: SiteMapping | None = None, sheet: str | None = None) -> PatientDays:
    """Read a lab export (a csv/tsv/xlsx/parquet file, or a MEDS folder) by `mapping`."""
    from prcrs.data.io import read_table

    mapping = mapping or SiteMapping()
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found")
    if path.is_dir() or _is_meds_file(path):
        observations, notes = _meds_observations(path, mapping)
        form = "meds"
    else:
        raw = read_table(path, header_markers=(), sheet=sheet)
        form = form_of(raw.columns, mapping)
        observations, notes = (_long_observations if form == "long" else _wide_observations)(raw, mapping, path.name)
    table, more = _patient_days(observations, mapping, path.name)
    return PatientDays(table, form, path.name, notes + more, mapping.synthetic, mapping.site)


# An observation frame: patient, day, order (within the day), key (factor or GRADE), value
# (schema units), and site where the export has one.

def _lab_key(name: str, mapping: SiteMapping) -> tuple[str | None, str | None]:
    """(factor key or GRADE, the mapping's unit) of one of the export's lab names or codes, or
    (None, None): the mapping's name first, then the names `prcrs predict` accepts (for a MEDS
    code, also its last '//' part)."""
    if name in mapping.labs:
        return mapping.labs[name].factor, mapping.labs[name].unit
    if name == mapping.grade:
        return GRADE, None
    for candidate in (name, name.rsplit("//", 1)[-1]):
        key = name_lookup().get(normal_name(candidate))
        if key in schema.BY_KEY:
            return key, None
        if key == "grade":
            return GRADE, None
    return None, None


def _read_cells(key: str, unit: str | None, cells: pd.Series, what: str) -> tuple[np.ndarray, list[str]]:
    """The cells of one factor in one unit (`unit`; None: the factor's own, or a unit in the
    cell) in the schema's units, NaN where a cell is left out, by `read_values`' rules with the
    percentage convention decided over all of them; and a note per kind of value left out."""
    name = f"{what} ({unit})" if unit else what
    try:
        columns = read_columns([name], {name: cells.tolist()})
    except DataError as exc:
        raise DataError(str(exc)) from None
    reading = columns.readings.get(name)
    if reading is None or reading.key != key:  # read under the factor's key, whatever the export calls it
        name = f"{key} ({unit})" if unit else key
        columns = read_columns([name], {name: cells.tolist()})
    values, left_out = np.full(len(cells), np.nan), []
    for i, cell in enumerate(cells.tolist()):
        read, _, warnings = read_values({name: cell}, columns)
        if key in read:
            values[i] = read[key]
        left_out += [w for w in warnings if "left out" in w]
    notes = [f"{what}: {len(left_out)} value(s) left out, e.g. {left_out[0]}"] if left_out else []
    return values, notes + [f"{what}: {n}" for n in columns.notes]


def _grades(cells: pd.Series, source: str) -> np.ndarray:
    values = pd.to_numeric(cells, errors="coerce").to_numpy(float)
    bad = np.isfinite(values) & ~np.isin(values, [0, 1, 2, 3, 4])
    unreadable = cells.notna().to_numpy() & ~np.isfinite(values) & \
        ~cells.astype(str).str.strip().str.lower().isin({"", "nan", "na", "none"}).to_numpy()
    if bad.any() or unreadable.any():
        shown = cells.to_numpy()[np.flatnonzero(bad | unreadable)[0]]
        raise DataError(f"{source}: CRS grade must be a whole number 0-4, got {shown!r}")
    return values


def _days(frame: pd.DataFrame, mapping: SiteMapping, source: str) -> np.ndarray:
    """Whole days since infusion per row: the `day` column, or `time` minus the patient's
    `infusion` time, rounded down."""
    if mapping.time is None:
        if mapping.day not in frame.columns and DAY not in frame.columns:
            raise DataError(f"{source}: no day column {mapping.day!r} (or {DAY!r}); or name a `time` and `infusion` "
                            "column in the mapping")
        column = mapping.day if mapping.day in frame.columns else DAY
        day = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
        if not np.isfinite(day).all() or (day != np.floor(day)).any():
            raise DataError(f"{source}: column {column!r} must be a whole number of days since infusion on every row")
        return day
    for column in (mapping.time, mapping.infusion):
        if column is None or column not in frame.columns:
            raise DataError(f"{source}: with `time`, the mapping needs the export's time and `infusion` columns "
                            f"(missing: {column!r})")
    time = pd.to_datetime(frame[mapping.time], errors="coerce")
    infusion = pd.to_datetime(frame[mapping.infusion], errors="coerce").groupby(frame[mapping.patient]).transform("min")
    if time.isna().any() or infusion.isna().any():
        raise DataError(f"{source}: a time or infusion time that is not a date-time, or a patient with no infusion "
                        "time")
    return np.floor((time - infusion).dt.total_seconds().to_numpy() / DAY_SECONDS)


def _long_observations(raw: pd.DataFrame, mapping: SiteMapping, source: str) -> tuple[pd.DataFrame, list[str]]:
    _require(raw, [mapping.patient], source)
    day = _days(raw, mapping, source)
    frame = pd.DataFrame({"patient": raw[mapping.patient].to_numpy(), "day": day, "order": np.arange(len(raw)),
                          "name": raw[mapping.lab].astype(str).str.strip().to_numpy(), "cell": raw[mapping.value]})
    frame["unit"] = raw[mapping.unit].to_numpy() if mapping.unit in raw.columns else None
    if mapping.site_column in raw.columns:
        frame["site"] = raw[mapping.site_column].to_numpy()
    parts, notes, unused = [], [], []
    for (name, unit), rows in frame.groupby(["name", frame["unit"].fillna("")], sort=True):
        key, mapped_unit = _lab_key(name, mapping)
        if key is None:
            unused.append(name)
            continue
        rows = rows.copy()
        if key == GRADE:
            rows["value"] = _grades(rows["cell"], source)
        else:
            rows["value"], said = _read_cells(key, unit or mapped_unit, rows["cell"], name)
            notes += said
        parts.append(rows.assign(key=key))
    if unused:
        notes.append(f"labs not used ({len(unused)}: not in the mapping, not a factor name): {', '.join(unused[:8])}"
                     + (" ..." if len(unused) > 8 else ""))
    return _concat(parts), notes


def _wide_observations(raw: pd.DataFrame, mapping: SiteMapping, source: str) -> tuple[pd.DataFrame, list[str]]:
    from prcrs.data.cohort import segment_patients

    renamed = {}  # a column the mapping names takes its key and unit; another keeps its name (and header unit)
    for column in raw.columns:
        key, unit = _lab_key(str(column), mapping)
        if key is not None and key != GRADE:
            named = str(column) in mapping.labs
            renamed[column] = (f"{key} ({unit})" if unit else key) if named else str(column)
    day = _days(raw, mapping, source)
    patient = raw[mapping.patient].to_numpy() if mapping.patient in raw.columns else \
        segment_patients(pd.Series(day, index=raw.index), source)
    grade_column = next((c for c in raw.columns if _lab_key(str(c), mapping)[0] == GRADE), None)
    table = raw[list(renamed)].rename(columns=renamed)
    columns = read_columns(table.columns, {c: table[c].tolist() for c in table.columns})
    base = pd.DataFrame({"patient": patient, "day": day, "order": np.arange(len(raw))})
    if mapping.site_column in raw.columns:
        base["site"] = raw[mapping.site_column].to_numpy()
    values = [read_values(cells, columns) for cells in table.to_dict("records")]
    parts, left_out = [], {}
    for reading in columns.readings.values():
        parts.append(base.assign(key=reading.key, value=[v[0].get(reading.key, np.nan) for v in values]))
    for _, _, warnings in values:
        for warning in warnings:
            if "left out" in warning:
                left_out.setdefault(warning.split(" left out")[0], []).append(warning)
    if grade_column is not None:
        parts.append(base.assign(key=GRADE, value=_grades(raw[grade_column], source)))
    notes = [f"{n}" for n in columns.notes] + [f"{what}: {len(found)} value(s) left out, e.g. {found[0]}"
                                               for what, found in left_out.items()]
    unknown = [str(c) for c in columns.unknown if str(c) not in {mapping.patient, mapping.day, DAY, mapping.time,
                                                                 mapping.infusion, mapping.site_column, grade_column}]
    if unknown:
        notes.append(f"columns not used ({len(unknown)}): {', '.join(unknown[:8])}" + (" ..." if len(unknown) > 8
                                                                                       else ""))
    return _concat(parts), notes


def _meds_observations(path: Path, mapping: SiteMapping) -> tuple[pd.DataFrame, list[str]]:
    """A MEDS folder's `data/*.parquet` (or a folder of parquet files, or one file) as observations."""
    if path.is_dir():
        folder = path / "data" if (path / "data").is_dir() else path
        files = sorted(folder.rglob("*.parquet"))
    else:
        files = [path]
    if not files:
        raise DataError(f"{path.name}: no MEDS data (data/*.parquet) in this folder")
    return _meds_frame(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True), mapping, path.name)


def _meds_frame(raw: pd.DataFrame, mapping: SiteMapping, source: str) -> tuple[pd.DataFrame, list[str]]:
    """MEDS events (`meds.DataSchema`: subject_id, time, code, numeric_value) as observations;
    the day since infusion from each subject's first `mapping.infusion` event."""
    import meds
    import pyarrow as pa

    try:
        table = meds.DataSchema.align(pa.Table.from_pandas(raw, preserve_index=False))
    except Exception as exc:  # the schema's own message names the column
        raise DataError(f"{source}: not MEDS data: {str(exc).splitlines()[0]}") from None
    events = table.to_pandas()
    subject, time, code = meds.DataSchema.subject_id_name, meds.DataSchema.time_name, meds.DataSchema.code_name
    if mapping.infusion is None:
        raise DataError(f"{source}: MEDS data needs the mapping's `infusion`: the code of the CAR-T infusion event")
    infusion = events[events[code] == mapping.infusion].groupby(subject)[time].min()
    if infusion.empty:
        raise DataError(f"{source}: no event with the infusion code {mapping.infusion!r}")
    events = events[events[subject].isin(infusion.index) & events[time].notna()]
    days = np.floor((events[time] - events[subject].map(infusion)).dt.total_seconds().to_numpy() / DAY_SECONDS)
    # numeric_value is float32: each read as the decimal it stands for (0.0123, not 0.012299999594688)
    values = [float(str(v)) for v in events[meds.DataSchema.numeric_value_name].to_numpy(np.float32)]
    flat = pd.DataFrame({mapping.patient: events[subject].to_numpy(), "day": days,
                         mapping.lab: events[code].to_numpy(), mapping.value: values})
    flat = flat[flat[mapping.lab] != mapping.infusion]
    untimed = int(len(table) - len(events))
    observations, notes = _long_observations(flat.reset_index(drop=True),
                                             SiteMapping(**{**mapping.__dict__, "day": "day", "time": None}), source)
    return observations, notes + ([f"{untimed} event(s) without a time or an infused subject left out"] if untimed
                                  else [])


def _require(raw: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise DataError(f"{source}: no column {missing[0]!r} (name the export's columns in a mapping file: "
                        "patient, day or time, lab, value, unit)")


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    columns = ["patient", "day", "order", "key", "value", "site"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True).reindex(columns=columns)


def _patient_days(observations: pd.DataFrame, mapping: SiteMapping, source: str) -> tuple[pd.DataFrame, list[str]]:
    """One row per patient-day (see `PatientDays.table`); each factor's values of one day by its
    `same_day` rule in the order given (time, then file row), the grade by the day's highest."""
    values = observations[observations["value"].notna()]
    if values.empty or not (values["key"] != GRADE).any():
        raise DataError(f"{source}: no lab value read: name the export's labs in a mapping file (labs: ...)")
    negative = values["day"] < 0
    notes = [f"{int(negative.sum())} value(s) from before the infusion (day < 0) left out"] if negative.any() else []
    values = values[~negative].sort_values(["order"], kind="stable")
    first = pd.Series(pd.factorize(values["patient"])[0], index=values.index)
    keyed = values.assign(_p=first)
    rules = {key: (mapping.rule(key) if key != GRADE else "max") for key in values["key"].unique()}
    several = keyed.groupby(["_p", "day", "key"]).size()
    if (several > 1).any():
        counts = several[several > 1].groupby(level="key").size()
        notes.append("several values on one day, made one by the same_day rule: " + ", ".join(
            f"{key} {n} day(s) ({rules[key]})" for key, n in counts.items()))
    wide = {}
    for key, rows in keyed.groupby("key"):
        wide[key] = rows.groupby(["_p", "day"])["value"].agg(rules[key])
    table = pd.DataFrame(wide).sort_index()
    ids = keyed.drop_duplicates("_p").set_index("_p")["patient"]
    out = pd.DataFrame({PATIENT: ids.reindex(table.index.get_level_values(0)).to_numpy(),
                        DAY: table.index.get_level_values(1).astype(int)})
    for key in schema.FEATURE_KEYS:
        if key in table.columns:
            out[header(key)] = table[key].to_numpy(float)
    if GRADE in table.columns:
        out[GRADE_COLUMN] = table[GRADE].to_numpy(float)
    if "site" in keyed.columns and keyed["site"].notna().any():
        site = keyed.groupby("_p")["site"].first()
        out[SITE] = site.reindex(table.index.get_level_values(0)).astype(str).to_numpy()
    missing = [schema.BY_KEY[k].name for k in schema.FEATURE_KEYS if header(k) not in out.columns]
    if missing:
        notes.append(f"{len(missing)} factor(s) never given: {', '.join(missing[:10])}"
                     + (" ..." if len(missing) > 10 else ""))
    if not math.isfinite(float(out[DAY].max())):
        raise DataError(f"{source}: no day since infusion could be read")
    return out.reset_index(drop=True), notes
