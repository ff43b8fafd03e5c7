"""`make bench` (third part): `prcrs predict` on a large file, as a whole command: wall seconds and
peak memory (the child's maximum resident set, from the operating system).

A platform of the project's recipe (forest + one day of lags, combination 1234, horizon 1) is
trained into a temporary store on the CAR-T data (the real sheet when $PRCRS_DATA_DIR has it, the
synthetic cohort otherwise); the input is `ROWS` patient-days drawn from that cohort's days with
a ±5 % jitter, 5 days per patient. Timed with and without explanations (`--no-explain`). Adds
"predict_scale" to bench.json with the targets (at most 2 GB peak and 60 s for 50,000 rows).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from bench_file import record

ROOT = Path(__file__).resolve().parents[1]
ROWS = int(os.environ.get("PRCRS_BENCH_ROWS", 50_000))
TARGET_SECONDS, TARGET_GB = 60, 2.0


def _input(path: Path, rows: int) -> None:
    from prcrs import schema
    from prcrs.data.sources import load_cohort

    cohort = load_cohort("cart")
    rng = np.random.default_rng(0)
    days = cohort.frame[list(schema.FEATURE_KEYS)].sample(rows, replace=True, random_state=0).reset_index(drop=True)
    days = days * rng.uniform(0.95, 1.05, days.shape)
    days.insert(0, "patient", [f"p{i // 5}" for i in range(rows)])
    days.insert(1, "Relative date", np.arange(rows) % 5)
    days.to_csv(path, index=False)


PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
        "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def _timed(command: list[str]) -> dict:
    """Wall seconds and peak memory (the largest resident set, in a fresh parent of its own) of
    one command, which must succeed."""
    start = time.perf_counter()
    peak_kib = int(subprocess.run([sys.executable, "-c", PEAK, *command], check=True, capture_output=True,
                                  text=True).stdout)
    return {"seconds": round(time.perf_counter() - start, 1), "peak_gb": round(peak_kib / 2**20, 2)}


def main() -> None:
    from prcrs.serving.train_final import train_final

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/scale.db"
        train_final(["model=forest", "history=lags", "cv.folds=2", "cv.explain_rows=0", "study=scale"],
                    horizons=(1,), combinations=("1234",), tracking_uri=uri)
        days = Path(tmp) / "days.csv"
        _input(days, ROWS)
        prcrs = str(Path(sys.executable).with_name("prcrs"))
        base = [prcrs, "predict", str(days), "--tracking-uri", uri, "--out", str(Path(tmp) / "out.csv")]
        result = {"rows": ROWS, "model": "forest + lags, combination 1234, horizon 1",
                  "no_explain": _timed([*base, "--no-explain"]), "explained": _timed(base)}
    for run in ("explained", "no_explain"):
        seconds, peak = result[run]["seconds"], result[run]["peak_gb"]
        result[run]["met"] = bool(seconds <= TARGET_SECONDS and peak <= TARGET_GB)
    result["target"] = {"seconds_max": TARGET_SECONDS, "peak_gb_max": TARGET_GB}
    record("predict_scale", result)


if __name__ == "__main__":
    main()
