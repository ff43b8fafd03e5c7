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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from prcrs import schema
from prcrs.data.cohort import Cohort
from prcrs.data.mapping import GRADE, SiteMapping
from prcrs.data.reading import name_lookup, normal_name, read_columns, read_values
from prcrs.errors import DataError

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
        note = f"{dropped} patient-day(s) without a CRS grade left out of the cohort"
        if dropped and note not in self.notes:
            self.notes.append(note)
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
    (None, None): the mapping's names first, compared as column names are ('IL-6' = 'il6'), then
    the names `prcrs predict` accepts (for a MEDS code, also its last '//' part)."""
    named = {normal_name(k): v for k, v in mapping.labs.items()}
    if normal_name(name) in named:
        return named[normal_name(name)].factor, named[normal_name(name)].unit
    if normal_name(name) == normal_name(mapping.grade):
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
    values, said = np.full(len(cells), np.nan), []
    for i, cell in enumerate(cells.tolist()):
        read, _, warnings = read_values({name: cell}, columns)
        if key in read:
            values[i] = read[key]
        said += warnings
    return values, counted(what, said) + [f"{what}: {n}" for n in columns.notes]


# The kinds of a value's reading warning (`read_values`), as counts: the notes quote no cell.
KINDS = (("read at its bound", "censored value(s) read at their bound"),
         ("impossible value", "value(s) outside the plausible range left out"),
         ("unknown unit", "value(s) in an unknown unit left out"),
         ("left out", "unreadable value(s) left out"))


def counted(what: str, warnings: list[str]) -> list[str]:
    """One note per kind of reading warning of `what`, with its count."""
    counts: dict[str, int] = {}
    for warning in warnings:
        kind = next((text for marker, text in KINDS if marker in warning), None)
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
    return [f"{what}: {n} {kind}" for kind, n in counts.items()]


def _grades(cells: pd.Series, source: str) -> np.ndarray:
    from prcrs.data.io import MISSING_TOKENS

    values = pd.to_numeric(cells, errors="coerce").to_numpy(float)
    bad = np.isfinite(values) & ~np.isin(values, [0, 1, 2, 3, 4])
    unreadable = cells.notna().to_numpy() & ~np.isfinite(values) & \
        ~cells.astype(str).str.strip().str.lower().isin(MISSING_TOKENS | {"nan"}).to_numpy()
    if bad.any() or unreadable.any():
        shown = cells.to_numpy()[np.flatnonzero(bad | unreadable)[0]]
        raise DataError(f"{source}: CRS grade must be a whole number 0-4, got {shown!r}")
    return values


MAX_DAY = 365  # days since infusion a row may have: beyond, a wrong date or unit


def _patients(frame: pd.DataFrame, mapping: SiteMapping, source: str) -> np.ndarray:
    """The patient column, refused with the rows named where a cell is blank (merged cells read
    as blank: filling them down could hand one patient's days to another)."""
    _require(frame, [mapping.patient], source)
    patient = frame[mapping.patient]
    blank = patient.isna() | patient.astype(str).str.strip().isin({"", "nan", "None"})
    if blank.any():
        rows = [str(r) for r in frame.index[blank.to_numpy()][:10]]
        raise DataError(f"{source}: the patient column {mapping.patient!r} is blank on row(s) {', '.join(rows)}: write "
                        "the patient on every row")
    return patient.astype(str).to_numpy() if patient.map(type).nunique() > 1 else patient.to_numpy()


def _days(frame: pd.DataFrame, mapping: SiteMapping, source: str, patient: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whole days since infusion, the order of the rows within a day) per row: the `day` column
    in file order; or whole 24-hour periods from the patient's `infusion` time to `time`
    (`time_format`, else ISO 8601), in time order."""
    if mapping.time is None:
        if mapping.day not in frame.columns and DAY not in frame.columns:
            raise DataError(f"{source}: no day column {mapping.day!r} (or {DAY!r}); or name a `time` and `infusion` "
                            "column in the mapping")
        column = mapping.day if mapping.day in frame.columns else DAY
        day = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
        if not np.isfinite(day).all() or (day != np.floor(day)).any():
            raise DataError(f"{source}: column {column!r} must be a whole number of days since infusion on every row")
        order = np.arange(len(frame))
    else:
        for column in (mapping.time, mapping.infusion):
            if column is None or column not in frame.columns:
                raise DataError(f"{source}: with `time`, the mapping needs the export's time and `infusion` columns "
                                f"(missing: {column!r})")
        fmt = mapping.time_format or "ISO8601"
        try:
            time = pd.to_datetime(frame[mapping.time], format=fmt)
            infusion = pd.to_datetime(frame[mapping.infusion], format=fmt).groupby(patient).transform("min")
        except (ValueError, TypeError) as exc:
            raise DataError(f"{source}: a time that is not a date-time in {fmt} (set `time_format` in the mapping, "
                            f"e.g. '%d/%m/%Y %H:%M'): {str(exc).splitlines()[0][:80]}") from None
        if infusion.isna().any():
            raise DataError(f"{source}: a patient with no infusion time in {mapping.infusion!r}")
        day = np.floor((time - infusion).dt.total_seconds().to_numpy() / DAY_SECONDS)
        order = np.lexsort((np.arange(len(frame)), time.to_numpy()))
        order = np.argsort(order, kind="stable")  # each row's rank in time, then file order
    late = day > MAX_DAY
    if late.any():
        raise DataError(f"{source}: day {day[late][0]:g} since infusion at row {frame.index[late][0]}: more than "
                        f"{MAX_DAY} days (a wrong date or day column?)")
    return day, order


def _sites(frame: pd.DataFrame, mapping: SiteMapping, source: str, patient: np.ndarray) -> np.ndarray | None:
    """The site column, if the export has one: never blank, one site per patient."""
    if mapping.site_column not in frame.columns:
        return None
    site = frame[mapping.site_column]
    blank = site.isna() | site.astype(str).str.strip().isin({"", "nan", "None"})
    if blank.any():
        raise DataError(f"{source}: the site column {mapping.site_column!r} is blank on row {frame.index[blank][0]}")
    per_patient = pd.Series(site.astype(str).to_numpy()).groupby(patient).nunique()
    if (per_patient > 1).any():
        raise DataError(f"{source}: a patient has rows from two sites in {mapping.site_column!r}: one site per "
                        "patient (leave-one-site-out CV tests each patient at one site)")
    return site.astype(str).to_numpy()


def _long_observations(raw: pd.DataFrame, mapping: SiteMapping, source: str) -> tuple[pd.DataFrame, list[str]]:
    patient = _patients(raw, mapping, source)
    day, order = _days(raw, mapping, source, patient)
    units = raw[mapping.unit] if mapping.unit in raw.columns else pd.Series(None, index=raw.index, dtype=object)
    frame = pd.DataFrame({"patient": patient, "day": day, "order": order,
                          "name": raw[mapping.lab].astype(str).str.strip().to_numpy(),
                          "cell": raw[mapping.value].to_numpy(),
                          "unit": [None if u is None or str(u).strip() in {"", "nan"} else str(u).strip()
                                   for u in units.astype(object).where(units.notna(), None)]})
    site = _sites(raw, mapping, source, patient)
    if site is not None:
        frame["site"] = site
    return _read_labs(frame, mapping, source, say_assumed=True)


def _wide_observations(raw: pd.DataFrame, mapping: SiteMapping, source: str) -> tuple[pd.DataFrame, list[str]]:
    """A wide export (a row per draw or day, a column per lab) melted to the long form's rows: a
    column's unit is its header's ('IL-6 (ng/mL)') or the mapping's; two columns of one factor
    are refused, as `prcrs predict` refuses them."""
    from prcrs.data.cohort import check_one_name_per_factor, segment_patients
    from prcrs.data.reading import header_unit

    labs = {}
    for column in raw.columns:
        key, unit = _lab_key(str(column), mapping)
        if key is not None and key != GRADE:
            labs[column] = (key, unit if unit is not None else header_unit(column))
    check_one_name_per_factor({str(c): key for c, (key, _) in labs.items()}, source)
    if mapping.patient in raw.columns:
        patient = _patients(raw, mapping, source)
        day, order = _days(raw, mapping, source, patient)
    elif mapping.time is not None:
        raise DataError(f"{source}: with `time`, the export needs a patient column ({mapping.patient!r})")
    else:  # as the published sheet: a patient starts where the day does not increase
        day, order = _days(raw, mapping, source, np.zeros(len(raw)))
        patient = segment_patients(pd.Series(day, index=raw.index), source)
    site = _sites(raw, mapping, source, patient)
    grade_column = next((c for c in raw.columns if _lab_key(str(c), mapping)[0] == GRADE), None)
    parts = []
    for column, (_, unit) in labs.items():
        parts.append(pd.DataFrame({"patient": patient, "day": day, "order": order, "name": str(column),
                                   "cell": raw[column].to_numpy(), "unit": unit}))
    if grade_column is not None:
        parts.append(pd.DataFrame({"patient": patient, "day": day, "order": order, "name": mapping.grade,
                                   "cell": raw[grade_column].to_numpy(), "unit": None}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["patient", "day", "order", "name", "cell", "unit"])
    if site is not None:
        frame["site"] = np.tile(site, len(parts))
    frame = frame[frame["cell"].notna()]
    if grade_column is not None:
        frame.loc[frame["name"] == mapping.grade, "name"] = GRADE_NAME
    observations, notes = _read_labs(frame, mapping, source, say_assumed=False, grade_name=GRADE_NAME)
    known = {mapping.patient, mapping.day, DAY, mapping.time, mapping.infusion, mapping.site_column, grade_column}
    unknown = [str(c) for c in raw.columns if c not in labs and c not in known]
    if unknown:
        notes.append(f"columns not used ({len(unknown)}): {', '.join(unknown[:8])}" + (" ..." if len(unknown) > 8
                                                                                       else ""))
    return observations, notes


GRADE_NAME = "\x00grade"  # a wide export's grade column among the melted labs (no lab is named so)


def _read_labs(frame: pd.DataFrame, mapping: SiteMapping, source: str, say_assumed: bool,
               grade_name: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Long rows (patient, day, order, name, cell, unit, [site]) as observations, each lab read
    by the reading rules: one unit throughout a lab (or none), the mapping's unit where a row has
    none, the grade checked."""
    parts, notes, unused = [], [], []
    for name, rows in frame.groupby("name", sort=True):
        key, mapped_unit = (GRADE, None) if name == grade_name else _lab_key(name, mapping)
        if key is None:
            unused.append(name)
            continue
        if key == GRADE:
            parts.append(rows.assign(key=key, value=_grades(rows["cell"], source)))
            continue
        given = rows["unit"].notna()
        if given.any() and not given.all():
            raise DataError(f"{source}: lab {name!r} gives a unit on some rows and none on {int((~given).sum())} "
                            "others: give the unit on every row (a value without one cannot be told apart)")
        if say_assumed and not given.any() and mapped_unit is None:
            notes.append(f"{name}: no unit given: read in {schema.BY_KEY[key].name}'s own unit, "
                         f"{schema.BY_KEY[key].unit}")
        for unit, same in rows.groupby(rows["unit"].fillna(""), sort=True):
            values, said = _read_cells(key, unit or mapped_unit, same["cell"], name)
            notes += said
            parts.append(same.assign(key=key, value=values))
    if unused:
        notes.append(f"labs not used ({len(unused)}: not in the mapping, not a factor name): {', '.join(unused[:8])}"
                     + (" ..." if len(unused) > 8 else ""))
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
    try:
        events = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    except Exception as exc:  # a corrupt or foreign file: pyarrow's reason, in one line
        raise DataError(f"{path.name}: cannot read its parquet data: {str(exc).splitlines()[0][:120]}") from None
    return _meds_frame(events, mapping, path.name)


def _meds_frame(raw: pd.DataFrame, mapping: SiteMapping, source: str) -> tuple[pd.DataFrame, list[str]]:
    """MEDS events (`meds.DataSchema`: subject_id, time, code, numeric_value) as observations;
    the day since infusion from each subject's first `mapping.infusion` event."""
    import meds
    import pyarrow as pa

    try:
        table = meds.DataSchema.align(pa.Table.from_pandas(raw, preserve_index=False))
    except Exception as exc:  # the schema's own message names the column
        raise DataError(f"{source}: not MEDS data: {str(exc).splitlines()[0]}") from None
    subject, time, code = meds.DataSchema.subject_id_name, meds.DataSchema.time_name, meds.DataSchema.code_name
    events = table.to_pandas()
    if meds.DataSchema.numeric_value_name not in events.columns:
        raise DataError(f"{source}: MEDS data without a {meds.DataSchema.numeric_value_name!r} column: no lab value")
    events = events.sort_values([subject, time], kind="stable")  # a day's values in time order
    if mapping.infusion is None:
        raise DataError(f"{source}: MEDS data needs the mapping's `infusion`: the code of the CAR-T infusion event")
    infusion = events[events[code] == mapping.infusion].groupby(subject)[time].min()
    if infusion.empty:
        raise DataError(f"{source}: no event with the infusion code {mapping.infusion!r}")
    events = events[events[subject].isin(infusion.index) & events[time].notna()]
    valueless = int((events[meds.DataSchema.numeric_value_name].isna() & (events[code] != mapping.infusion)).sum())
    days = np.floor((events[time] - events[subject].map(infusion)).dt.total_seconds().to_numpy() / DAY_SECONDS)
    # numeric_value is float32: each read as the decimal it stands for (0.0123, not 0.012299999594688)
    values = [float(str(v)) for v in events[meds.DataSchema.numeric_value_name].to_numpy(np.float32)]
    flat = pd.DataFrame({mapping.patient: events[subject].to_numpy(), "day": days,
                         mapping.lab: events[code].to_numpy(), mapping.value: values})
    flat = flat[flat[mapping.lab] != mapping.infusion]
    untimed = int(len(table) - len(events))
    observations, notes = _long_observations(flat.reset_index(drop=True),
                                             SiteMapping(**{**mapping.__dict__, "day": "day", "time": None}), source)
    notes += [f"{untimed} event(s) without a time or an infused subject left out"] if untimed else []
    notes += [f"{valueless} event(s) without a numeric_value left out"] if valueless else []
    return observations, notes


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
        raise DataError(f"{source}: no lab value read: name the export's labs in a mapping file (labs: ...), and for "
                        f"a long export its lab and value columns (now {mapping.lab!r}, {mapping.value!r})")
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
    return out.reset_index(drop=True), notes
