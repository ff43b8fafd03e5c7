"""`make bench` (fourth part) and `make bench-reproduce`: the reproduction and its report, timed
as whole commands on a fresh store.

`--quick`: `experiments/reproduce.py --quick` (synthetic data, 2 folds, 2 epochs), then `prcrs
report` on that store ("reproduce_quick" in bench.json). Without it: the full `make reproduce`
(every config on the CAR-T data that $PRCRS_DATA_DIR finds, then the report; "reproduce"),
which takes minutes to tens of minutes. Each runs with $PRCRS_HOME and $MLFLOW_TRACKING_URI in a
temporary folder (`--keep DIR`: in DIR, kept), so that nothing is resumed and no pretrained
weights are reused.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_file import record

ROOT = Path(__file__).resolve().parents[1]


def _timed(command: list[str], env: dict) -> float:
    """Wall seconds of `command`, which must succeed (its output is kept only on failure)."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick reproduction (synthetic, 2 folds, 2 epochs)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="an empty folder to run in and keep (its store: benchmarks/compare_stores.py)")
    args = parser.parse_args()
    if args.keep is not None and (not args.keep.is_dir() or any(args.keep.iterdir())):
        sys.exit(f"--keep {args.keep}: give an empty folder")
    with (tempfile.TemporaryDirectory() if args.keep is None else contextlib.nullcontext(str(args.keep))) as home:
        uri = f"sqlite:///{home}/mlruns/mlflow.db"
        Path(home, "mlruns").mkdir()
        env = {**os.environ, "PRCRS_HOME": home, "MLFLOW_TRACKING_URI": uri}
        prcrs = str(Path(sys.executable).with_name("prcrs"))
        runs = _timed([sys.executable, "experiments/reproduce.py", *(["--quick"] if args.quick else [])], env)
        report = _timed([prcrs, "report", "--tracking-uri", uri, "--out", f"{home}/reports"], env)
        with sqlite3.connect(f"{home}/mlruns/mlflow.db") as db:  # the finished configs, by data source
            sources = dict(db.execute(
                "select s.value, count(*) from runs r join tags t on r.run_uuid = t.run_uuid join tags s on "
                "r.run_uuid = s.run_uuid where t.key = 'role' and t.value = 'cv_parent' and s.key = 'data_source' "
                "and r.status = 'FINISHED' group by s.value").fetchall())
    record("reproduce_quick" if args.quick else "reproduce",
           {"runs_seconds": round(runs, 1), "report_seconds": round(report, 1),
            "total_seconds": round(runs + report, 1), "configs_by_data_source": sources})


if __name__ == "__main__":
    main()
