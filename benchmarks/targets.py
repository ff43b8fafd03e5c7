"""`make bench` (last part): the speed targets, each beside what bench.json measured, and whether
it is met. Rows with no measurement say which command measures them.

    python benchmarks/targets.py          # prints the table; writes it into bench.json ("targets")
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench_file import PATH, record


@dataclass(frozen=True)
class Target:
    what: str
    path: tuple[str, ...]  # where bench.json holds the measurement
    at_most: float
    unit: str
    measured_by: str


TARGETS = (
    Target("PrCRS 5-fold CV, warm", ("prcrs", "cv5_seconds"), 8, "s", "benchmarks/cv_speed.py"),
    Target("cold `python run.py`", ("prcrs", "cold_run_seconds"), 20, "s", "benchmarks/cv_speed.py"),
    Target("engine overhead over a plain PyTorch loop (PrCRS)", ("prcrs", "overhead_ratio"), 1.2, "x",
           "benchmarks/cv_speed.py"),
    Target("one prediction with explanation and band: forest + lags",
           ("predict_latency", "forest_lags", "in_process", "median_ms"), 20, "ms", "benchmarks/predict_latency.py"),
    Target("one prediction with explanation and band: PrCRS",
           ("predict_latency", "prcrs", "in_process", "median_ms"), 20, "ms", "benchmarks/predict_latency.py"),
    Target("`prcrs report` on the quick store", ("reproduce_quick", "report_seconds"), 60, "s",
           "benchmarks/reproduce_speed.py --quick"),
    Target("`make reproduce` on a fresh store (runs + report)", ("reproduce", "total_seconds"), 480, "s",
           "make bench-reproduce"),
    Target("a 50-trial search of PrCRS at one horizon (5 folds each)", ("search_50_trials", "seconds"), 420, "s",
           "make bench-search"),
    Target("50,000 rows through `prcrs predict` with explanations", ("predict_scale", "explained", "seconds"), 60,
           "s", "benchmarks/predict_scale.py"),
    Target("50,000 rows through `prcrs predict` without explanations", ("predict_scale", "no_explain", "seconds"),
           60, "s", "benchmarks/predict_scale.py"),
)


def measured(bench: dict, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(bench, dict) or key not in bench:
            return None
        bench = bench[key]
    return float(bench) if isinstance(bench, (int, float)) else None


def main() -> None:
    bench = json.loads(PATH.read_text()) if PATH.is_file() else {}
    rows = []
    for t in TARGETS:
        value = measured(bench, t.path)
        rows.append({"what": t.what, "measured": value, "target_at_most": t.at_most, "unit": t.unit,
                     "met": None if value is None else value <= t.at_most,
                     **({"measured_by": t.measured_by} if value is None else {})})
    width = max(len(t.what) for t in TARGETS)
    print(f"{'what':{width}}  {'measured':>10}  {'target':>9}  met")
    for r in rows:
        shown = "-" if r["measured"] is None else f"{r['measured']:g} {r['unit']}"
        met = f"not measured ({r['measured_by']})" if r["met"] is None else "met" if r["met"] else "NOT met"
        target = f"≤ {r['target_at_most']:g} {r['unit']}"
        print(f"{r['what']:{width}}  {shown:>10}  {target:>9}  {met}")
    record("targets", rows, echo=False)


if __name__ == "__main__":
    main()
