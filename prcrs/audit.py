"""Data audit: counts, missingness, implausible values and the imputation fingerprint."""

from __future__ import annotations

import numpy as np

from prcrs import schema
from prcrs.data.cohort import Cohort
from prcrs.data.fingerprint import fill_cells, find_fill_values


def audit(cohort: Cohort) -> dict:
    """A JSON-ready audit of a cohort (keys documented in the README)."""
    frame = cohort.frame
    target = frame[cohort.target].to_numpy(int)
    severe = target >= (schema.SEVERE_GRADE if cohort.kind == "cart" else 2)
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
    by_column = {}
    for f in fills:
        by_column.setdefault(f.column, {})[str(f.grade)] = {"value": f.value, "count": f.count,
                                                             "grade_days": f.grade_days}
    return {
        "source": cohort.source,
        "data_source": cohort.data_source,
        "kind": cohort.kind,
        "target": cohort.target,
        "rows": len(frame),
        "patients": cohort.n_patients,
        "days": len(frame),
        "severe_days": int(severe.sum()),
        "severe_patients": int(frame.loc[severe, "patient"].nunique()),
        "target_counts": {str(k): int(v) for k, v in zip(*np.unique(target, return_counts=True), strict=False)},
        "factors": len(present),
        "missing_fraction": {k: round(float(X[k].isna().mean()), 4) for k in present},
        "missing_fraction_overall": float(X.isna().to_numpy().mean()),
        "out_of_range": out_of_range,
        "fingerprint": {"cells": int(cells.to_numpy().sum()), "fraction": fraction,
                        "columns": len(by_column), "by_column": by_column},
        "fingerprint_fraction": fraction,
    }


def format_audit(report: dict) -> str:
    """The audit as a short text for the terminal."""
    lines = [
        f"source: {report['source']} ({report['kind']}, {report['factors']} factors)",
        f"patients {report['patients']}, days {report['days']}, severe days {report['severe_days']}, "
        f"severe patients {report['severe_patients']}",
        f"{report['target']} counts: {report['target_counts']}",
        f"missing cells: {report['missing_fraction_overall']:.1%}",
        f"label-imputation fingerprint: {report['fingerprint']['cells']} cells "
        f"({report['fingerprint_fraction']:.1%}) in {report['fingerprint']['columns']} columns",
    ]
    for column, grades in report["fingerprint"]["by_column"].items():
        detail = ", ".join(f"{g}: {v['value']:g} x{v['count']}/{v['grade_days']}" for g, v in grades.items())
        lines.append(f"  {column:18s} {detail}")
    if report["out_of_range"]:
        lines.append("values outside plausible ranges:")
        for key, info in report["out_of_range"].items():
            lines.append(f"  {key:18s} {info['count']} cell(s) outside {info['low']:g}-{info['high']:g} "
                         f"{info['unit']} (min {info['min']:g}, max {info['max']:g})")
    return "\n".join(lines)
