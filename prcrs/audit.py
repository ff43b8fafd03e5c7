"""Data audit: counts, missingness, implausible values, the imputation fingerprint and the leak probe."""

from __future__ import annotations

import numpy as np

from prcrs import schema
from prcrs.data.cohort import Cohort
from prcrs.data.fingerprint import FillValueMasker, fill_cells, find_fill_values
from prcrs.errors import ConfigError
from prcrs.leakprobe import probe_table


def audit(cohort: Cohort, probe: bool = True) -> dict:
    """A JSON-ready audit of a cohort (keys documented in the README); `probe=False` skips the
    leak probe (about 30 s)."""
    frame = cohort.frame
    target = frame[cohort.target].to_numpy(int)
    severe = cohort.severe
    present = [k for k in schema.FEATURE_KEYS if frame[k].notna().any()]
    X = frame[present]
    out_of_range = {}
    for key in present:
        f = schema.BY_KEY[key]
        outside = (X[key] < f.low) | (X[key] > f.high)
        if outside.any():
            out_of_range[key] = {"count": int(outside.sum()), "low": f.low, "high": f.high, "unit": f.unit,
                                 "min": float(X[key].min()), "max": float(X[key].max())}
    fills = find_fill_values(X, target)
    cells = fill_cells(X, target, fills)
    fraction = float(cells.to_numpy().sum() / X.size)
    masked = int(FillValueMasker(cohort.fill_values).fit(X).transform(X).isna().to_numpy().sum()
                 - X.isna().to_numpy().sum())
    by_column = {}
    for f in fills:
        by_column.setdefault(f.column, {})[str(f.grade)] = {"value": f.value, "count": f.count,
                                                             "grade_days": f.grade_days, "other": f.other}
    return {
        "source": cohort.source,
        "data_source": cohort.data_source,
        "kind": cohort.kind,
        "target": cohort.target,
        "rows": len(frame),
        "patients": cohort.n_patients,
        "patients_from": frame.attrs.get("patients_from", "patient column"),
        "days": len(frame),
        "severe_days": int(severe.sum()),
        "severe_patients": int(frame.loc[severe, "patient"].nunique()),
        "target_counts": {str(k): int(v) for k, v in zip(*np.unique(target, return_counts=True), strict=False)},
        "factors": len(present),
        "missing_fraction": {k: round(float(X[k].isna().mean()), 4) for k in present},
        "missing_fraction_overall": float(X.isna().to_numpy().mean()),
        "out_of_range": out_of_range,
        "fingerprint": {"cells": int(cells.to_numpy().sum()), "fraction": fraction, "masked_cells": masked,
                        "columns": len(by_column), "by_column": by_column},
        "fingerprint_fraction": fraction,
        "leak_probe": _probe(cohort) if probe else None,
    }


def _probe(cohort: Cohort) -> dict:
    """The leak probe's rows, or {"skipped": why} where the cohort is too small to cross-validate."""
    try:
        return probe_table(cohort)
    except (ConfigError, ValueError) as exc:
        return {"skipped": str(exc)}


def format_audit(report: dict) -> str:
    """The audit as a short text for the terminal."""
    lines = [
        f"source: {report['source']} ({report['kind']}, {report['factors']} factors)",
        f"patients {report['patients']} (told apart by {report['patients_from']}), days {report['days']}, "
        f"severe days {report['severe_days']}, "
        f"severe patients {report['severe_patients']}",
        f"{report['target']} counts: {report['target_counts']}",
        f"missing cells: {report['missing_fraction_overall']:.1%}",
        f"label-imputation fingerprint: {report['fingerprint']['cells']} cells "
        f"({report['fingerprint_fraction']:.1%}) hold their own {report['target']}'s fill value (its median), "
        f"in {report['fingerprint']['columns']} columns; un-imputation masks "
        f"{report['fingerprint']['masked_cells']} cells (every cell equal to any fill value of its column)",
        f"  {'factor':18s} {report['target']}: fill value x cells holding it / days of that {report['target']}",
    ]
    for column, grades in report["fingerprint"]["by_column"].items():
        detail = ", ".join(f"{g}: {v['value']:g} x{v['count']}/{v['grade_days']}" for g, v in grades.items())
        lines.append(f"  {column:18s} {detail}")
    if report["leak_probe"] and "skipped" in report["leak_probe"]:
        lines.append(f"leak probe skipped: {report['leak_probe']['skipped']}")
    elif report["leak_probe"]:
        lines.append("leak probe (same-day AUROC of a tree on exact-value indicators; 0.5 = no label; "
                     "see prcrs/leakprobe.py):")
        for label, row in report["leak_probe"].items():
            lines.append(f"  {label:16s} {row['auroc']:.3f} ± {row['sd']:.3f} ({row['split']} folds, "
                         f"un-imputation {row['unimpute']})")
    if report["out_of_range"]:
        lines.append("values outside plausible ranges:")
        for key, info in report["out_of_range"].items():
            lines.append(f"  {key:18s} {info['count']} cell(s) outside {info['low']:g}-{info['high']:g} "
                         f"{info['unit']} (min {info['min']:g}, max {info['max']:g})")
    return "\n".join(lines)
