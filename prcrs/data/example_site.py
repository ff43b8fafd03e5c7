"""A made-up second hospital, to try the site path on and to test it: a synthetic cohort that
differs from the embedded one (`SHIFT`: CRS graded more severely for the same labs, assays that
read CRP higher and ferritin lower, cytokines drawn less often, a few factors never measured),
with US units and lab names of
its own, written as a lab export in three forms from the same draws:

- `site_long.csv`: one row per lab value (subject, day, test, result, unit; the CRS grade as a
  test of its own), several draws on some days;
- `site_wide.csv`: one row per draw, one column per lab (units in the mapping);
- `meds/`: MEDS (`data/0.parquet`: subject_id, time, code, numeric_value; the infusion as an
  event), with `metadata/dataset.json`;
- `mapping.yaml`: the site's names, units and rules, marked `synthetic: true`.

Nothing here comes from real patients. `prcrs example-site FOLDER` writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from prcrs import schema, units
from prcrs.data.cohort import Cohort
from prcrs.data.synthetic import SiteShift, synthetic_cart

SHIFT = SiteShift(severity=1.1, grading=0.5, lab_scale={"crp": 1.4, "ferritin": 0.6, "ldh": 1.3},
                  missing_scale={4: 1.6}, absent=("il17a", "il4", "bnp", "alpha_hbdh", "prealbumin", "tumor_burden"))
UNITS = {"crp": "mg/dL", "il6": "ng/mL", "glucose": "mg/dL", "creatinine": "mg/dL", "hemoglobin": "g/dL",
         "albumin": "g/dL", "calcium": "mg/dL", "uric_acid": "mg/dL", "neutrophil_pct": "%", "lymphocyte_pct": "%",
         "monocyte_pct": "%"}
GRADE_TEST = "CRS_GRADE"
INFUSION_CODE = "PROCEDURE//CART_INFUSION"
START = pd.Timestamp("2026-01-05 09:00")  # the first infusion; each patient's is a week later
REDRAWN = ("crp", "il6", "ferritin")  # drawn twice on some days


def lab_name(key: str) -> str:
    """The made-up site's name of a factor: 'LAB//IL6', 'LAB//CRP', ..."""
    return f"LAB//{key.upper()}"


def site_unit(key: str) -> str:
    return UNITS.get(key, schema.BY_KEY[key].unit)


def _reported(value: float, key: str) -> float:
    """A value in the schema's unit as the site reports it: in its unit, to 4 significant digits
    (which MEDS's float32 `numeric_value` holds exactly as a decimal)."""
    return float(f"{value / units.factor(key, site_unit(key)):.4g}")


def site_cohort(n_patients: int = 120, seed: int = 7, shift: SiteShift = SHIFT) -> Cohort:
    """The made-up site's patient-days, in the schema's units (what the export encodes)."""
    return synthetic_cart(n_patients, seed=seed, shift=shift)


def site_events(cohort: Cohort, seed: int = 0) -> pd.DataFrame:
    """The cohort as lab events in the site's units: subject, time, day, test, result, unit, in
    time order; a second, later draw of `REDRAWN` on about a fifth of days, and one grade per day."""
    rng = np.random.default_rng(seed)
    frame = cohort.frame
    rows = []
    for (patient, day), day_rows in frame.groupby(["patient", "day"], sort=True):
        record = day_rows.iloc[0]
        infusion = START + pd.Timedelta(days=7 * int(patient))
        drawn = infusion + pd.Timedelta(days=int(day), hours=float(rng.uniform(0, 3)))
        for key in schema.FEATURE_KEYS:
            if np.isfinite(record[key]):
                rows.append((patient, drawn, int(day), lab_name(key), _reported(record[key], key), site_unit(key)))
        if rng.random() < 0.2:
            later = drawn + pd.Timedelta(hours=6)
            for key in REDRAWN:
                if np.isfinite(record[key]):
                    value = _reported(record[key] * float(rng.uniform(0.7, 1.3)), key)
                    rows.append((patient, later, int(day), lab_name(key), value, site_unit(key)))
        rows.append((patient, drawn, int(day), GRADE_TEST, float(record["grade"]), ""))
    events = pd.DataFrame(rows, columns=["patient", "time", "day", "test", "result", "unit"])
    events["subject"] = events["patient"].map(lambda p: f"S{int(p) + 1:04d}")
    return events.sort_values(["patient", "time"], kind="stable").reset_index(drop=True)


def mapping_of(site: str = "example-site") -> dict:
    """The made-up site's mapping file contents."""
    return {"site": site, "synthetic": True, "patient": "subject", "day": "day", "lab": "test", "value": "result",
            "unit": "unit", "grade": GRADE_TEST, "infusion": INFUSION_CODE,
            "labs": {lab_name(k): {"factor": k, "unit": site_unit(k)} for k in schema.FEATURE_KEYS}}


def write_example_site(folder: str | Path, n_patients: int = 120, seed: int = 7, sites: int = 1) -> dict[str, Path]:
    """Write the made-up site's export in three forms and its mapping (see the module); returns
    {form: path}. `sites` > 1: its patients come from that many hospitals (`site` column of the
    long and wide files: site-1, site-2, ...; patient p from site p mod `sites` + 1), for
    leave-one-site-out CV (`cv.group=site`)."""
    import yaml

    folder = Path(folder)
    (folder / "meds" / "data").mkdir(parents=True, exist_ok=True)
    (folder / "meds" / "metadata").mkdir(parents=True, exist_ok=True)
    events = site_events(site_cohort(n_patients, seed))
    columns = ["subject", "day", "test", "result", "unit"]
    if sites > 1:
        events["site"] = [f"site-{int(p) % sites + 1}" for p in events["patient"]]
        columns.append("site")
    paths = {"long": folder / "site_long.csv", "wide": folder / "site_wide.csv", "meds": folder / "meds",
             "mapping": folder / "mapping.yaml"}
    events[columns].to_csv(paths["long"], index=False)
    keys = ["patient", "subject", "time", "day", *(["site"] if sites > 1 else [])]
    draws = events.pivot_table(index=keys, columns="test", values="result",
                               aggfunc="first").reset_index().sort_values(["patient", "time"], kind="stable")
    draws.drop(columns=["patient", "time"]).to_csv(paths["wide"], index=False)
    subject = events["patient"].astype("int64") + 1
    infusions = events.drop_duplicates("patient")[["patient"]].assign(
        time=lambda f: [START + pd.Timedelta(days=7 * int(p)) for p in f["patient"]])
    meds_events = pd.concat([
        pd.DataFrame({"subject_id": infusions["patient"].astype("int64") + 1, "time": infusions["time"],
                      "code": INFUSION_CODE, "numeric_value": np.nan}),
        pd.DataFrame({"subject_id": subject, "time": events["time"], "code": events["test"],
                      "numeric_value": events["result"]}),
    ]).sort_values(["subject_id", "time"], kind="stable")
    meds_events["numeric_value"] = meds_events["numeric_value"].astype("float32")
    meds_events["time"] = meds_events["time"].astype("datetime64[us]")
    meds_events.to_parquet(paths["meds"] / "data" / "0.parquet", index=False)
    (paths["meds"] / "metadata" / "dataset.json").write_text(json.dumps(
        {"dataset_name": "prcrs example site (synthetic)", "dataset_version": "1", "etl_name": "prcrs example-site",
         "meds_version": "0.4"}, indent=1))
    mapping = mapping_of()
    paths["mapping"].write_text("# A made-up site (prcrs example-site): its names, units and rules.\n"
                                + yaml.safe_dump(mapping, sort_keys=False))
    return paths
