"""A site's mapping file: how its lab export names things (YAML, one per site).

    site: hospital-b            # the site's name in releases and reports (never a patient's)
    patient: subject            # the export's columns: the patient (any id; never logged or shown)
    day: day                    # the day since infusion, or `time` with `infusion` below
    grade: CRS grade            # the CRS grade (0-4): a column (wide) or a lab name / code (long, MEDS)
    lab: test                   # long format: the lab name, its value and its unit (optional)
    value: result
    unit: unit
    labs:                       # the export's lab names or codes -> factor and the unit of its values
      IL6: {factor: il6, unit: ng/mL}
      C-reactive protein: crp   # a factor alone: values in the factor's own unit (or the row's unit)
    same_day: {default: last, max: [il6, crp]}   # several values on one day (`SAME_DAY`)
    synthetic: false            # true for a made-up export: models trained on it say so

Every key is optional. The mapping's lab names are compared as column names are ('IL-6' =
'il6'); a lab it does not name is matched like a column of `prcrs predict` (the published
sheet's names, the project's keys, the page's labels). A unit given on a row of a long export
wins over the mapping's; a lab gives a unit on every row or on none. Times: with `time`, the
day since infusion is the number of whole 24-hour periods since the patient's infusion time
(from the `infusion` column, long and wide, or the first event whose code is `infusion`, MEDS),
read as ISO 8601 unless `time_format` gives strftime codes ('%d/%m/%Y %H:%M'). A `day` column
and a `time` column of the same draws agree only when the infusion is at midnight.

    >>> mapping = SiteMapping.from_dict({"labs": {"IL6": {"factor": "il6", "unit": "ng/mL"}}})
    >>> mapping.labs["IL6"], mapping.rule("il6"), mapping.rule("sodium")
    (LabName(factor='il6', unit='ng/mL'), 'max', 'last')
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from prcrs import schema
from prcrs.errors import DataError

GRADE = "grade"  # a lab mapped to this is the CRS grade, not a factor
# Several values of one factor on one day: the day's worst inflammation for the cytokines and CRP
# (their peak is what the models learnt from a daily draw), the last value otherwise.
SAME_DAY = {"default": "last", "max": [*schema.group_features(4), "crp"]}
RULES = ("first", "last", "max", "min", "mean", "median")


@dataclass(frozen=True)
class LabName:
    """What one of the export's lab names or codes is: a factor key (or `GRADE`) and the unit of
    its values where a row gives none (None: the factor's own)."""

    factor: str
    unit: str | None = None


@dataclass(frozen=True)
class SiteMapping:
    """A site's names (see the module). `labs`: the export's name or code -> `LabName`."""

    site: str | None = None
    patient: str = "patient"
    day: str = "day"
    time: str | None = None
    time_format: str | None = None  # of `time` and `infusion` (strftime codes); default ISO 8601
    infusion: str | None = None
    grade: str = "grade"
    site_column: str = "site"
    lab: str = "lab"
    value: str = "value"
    unit: str = "unit"
    labs: dict[str, LabName] = field(default_factory=dict)
    same_day: dict = field(default_factory=lambda: dict(SAME_DAY))
    synthetic: bool = False  # a made-up export (`prcrs example-site`): what is trained on it says so

    @classmethod
    def from_dict(cls, raw: dict, source: str = "mapping") -> SiteMapping:
        """A mapping from its YAML's contents; DataError in one line for an unknown key, factor,
        unit or rule."""
        from prcrs import units

        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise DataError(f"{source}: unknown key {unknown[0]!r}; a mapping has {', '.join(sorted(known))}")
        labs = {}
        given = raw.pop("labs", None) or {}
        if not isinstance(given, dict):
            raise DataError(f"{source}: labs must map the export's lab names to factors (name: factor, or name: "
                            "{factor: ..., unit: ...}), not a list or a value")
        for name, target in given.items():
            spec = {"factor": target} if isinstance(target, str) else dict(target) if isinstance(target, dict) else None
            if spec is None or set(spec) - {"factor", "unit"} or "factor" not in spec:
                raise DataError(f"{source}: labs.{name} must be a factor key or {{factor: ..., unit: ...}}")
            lab = LabName(str(spec["factor"]), None if spec.get("unit") is None else str(spec["unit"]))
            if lab.factor != GRADE and lab.factor not in schema.BY_KEY:
                raise DataError(f"{source}: labs.{name}: unknown factor {lab.factor!r} (the factor keys are "
                                f"prcrs's: il6, crp, ferritin, ...; or {GRADE!r})")
            if lab.unit is not None and lab.factor == GRADE:
                raise DataError(f"{source}: labs.{name}: the grade has no unit")
            if lab.unit is not None:
                try:
                    units.factor(lab.factor, lab.unit)
                except DataError as exc:
                    raise DataError(f"{source}: labs.{name}: {exc}") from None
            labs[str(name)] = lab
        given = raw.pop("same_day", None)
        if given is not None and not isinstance(given, dict):
            raise DataError(f"{source}: same_day maps a rule to factor keys ({{max: [il6, crp], default: last}})")
        same_day = {"default": SAME_DAY["default"], **given} if given else dict(SAME_DAY)
        ruled = [k for rule, keys in same_day.items() if rule != "default" and isinstance(keys, list) for k in keys]
        twice = sorted({k for k in ruled if ruled.count(k) > 1})
        if twice:
            raise DataError(f"{source}: same_day names {twice[0]} under two rules: give each factor one")
        for rule, keys in same_day.items():
            if rule == "default":
                if keys not in RULES:
                    raise DataError(f"{source}: same_day.default={keys!r}; use one of {', '.join(RULES)}")
            elif rule not in RULES or not isinstance(keys, list) or set(keys) - set(schema.BY_KEY):
                raise DataError(f"{source}: same_day.{rule} must be one of {', '.join(RULES)} with a list of "
                                "factor keys")
        synthetic = raw.pop("synthetic", False)
        if not isinstance(synthetic, bool):
            raise DataError(f"{source}: synthetic={synthetic!r} must be true or false")
        listed = [k for k, v in raw.items() if isinstance(v, (list, dict))]
        if listed:
            raise DataError(f"{source}: {listed[0]} must be one column name, not a list")
        text = {k: (None if v is None else str(v)) for k, v in raw.items()}
        return cls(**text, labs=labs, same_day=same_day, synthetic=synthetic)

    def rule(self, key: str) -> str:
        """How several values of factor `key` on one day become one (`same_day`)."""
        return next((rule for rule, keys in self.same_day.items() if rule != "default" and key in keys),
                    self.same_day["default"])


def load_mapping(path: str | Path | None) -> SiteMapping:
    """The mapping file at `path` (YAML), or the default mapping (no names of its own) for None."""
    if path is None:
        return SiteMapping()
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataError(f"mapping file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path.name}: not UTF-8 text: save the mapping file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise DataError(f"{path.name}: not YAML ({str(exc).splitlines()[0]})") from None
    if raw is not None and not isinstance(raw, dict):
        raise DataError(f"{path.name}: a mapping file holds keys (site, patient, labs, ...), not a list or value")
    return SiteMapping.from_dict(raw, path.name)
