"""`make bench-search`: a TPE search of PrCRS at one horizon, timed as one command on a fresh store.

    python run.py -m hydra/sweeper=tpe search=tpe trainer=reproduce model=prcrs horizon=1 \\
        hydra.sweeper.n_trials=50

Each trial is a 5-fold CV scored on inner-validation patients, on the schedule of the tuned study
(`trainer=reproduce`), over the space `conf/search/space/prcrs.yaml`, on the CAR-T data that
$PRCRS_DATA_DIR finds. It runs with $PRCRS_HOME and $MLFLOW_TRACKING_URI in a temporary folder, so
nothing is resumed. Writes "search_<N>_trials" to bench.json (the target reads the 50-trial one):

    python benchmarks/search_speed.py              # 50 trials (minutes to tens of minutes)
    python benchmarks/search_speed.py --trials 4   # a shorter search, in its own section
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_file import record

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    from prcrs import run_config

    source = run_config.load_cart_for(run_config.compose_config(["model=prcrs"])).data_source  # what run.py reads
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PRCRS_HOME": home, "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db"}
        command = [sys.executable, "run.py", "-m", "hydra/sweeper=tpe", "search=tpe", "trainer=reproduce",
                   "model=prcrs", "horizon=1", "study=search_speed", f"hydra.sweeper.n_trials={args.trials}",
                   f"hydra.sweep.dir={home}/sweep"]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    record(f"search_{args.trials}_trials", {"command": " ".join(command[1:-1]), "trials": args.trials,
                                            "seconds": round(seconds, 1),
                                            "seconds_per_trial": round(seconds / args.trials, 1),
                                            "data_source": source})


if __name__ == "__main__":
    main()
