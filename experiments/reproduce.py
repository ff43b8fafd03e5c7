"""`make reproduce`: every run behind the paper's tables and figures, then `prcrs report`.

Each artefact is a Hydra experiment config (conf/experiment/<name>.yaml) swept over the values
below. Finished configs are skipped (resume), so an interrupted reproduction picks up where it
stopped. `--quick` (the tests) runs the same sweeps on synthetic data with 2 folds and 2 epochs
into the given MLflow store.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEEP = "cnn,transformer,squeezeformer,prcrs"
TABULAR = "logreg,hgb,forest,tree,measix"
SWEEPS: dict[str, list[list[str]]] = {
    "table2": [[f"model={DEEP},{TABULAR}", "protocol=paper,honest"]],
    "table3": [["ablation=del_cytokines,del_biochemical,del_blood_routine,del_clotting", "protocol=paper,honest"]],
    "fig8": [["factors=1234,123,4,23,3,2", "horizon=1,2,3", "protocol=honest"],
             ["factors=1234", "horizon=1,2,3", "protocol=paper"]],
    "transfer": [["protocol=paper,honest"]],
    "audit": [[]],
}
QUICK = ["data=synthetic", "data.n_patients=80", "cv.folds=2", "trainer.max_epochs=2", "trainer.patience=1",
         "trainer.min_epochs=1"]
# Quick mode (the tests) sweeps fewer values so that every table and figure is still drawn.
QUICK_SWEEPS: dict[str, list[list[str]]] = {
    "table2": [["model=cnn,prcrs,forest,tree,measix", "protocol=paper,honest"]],
    "table3": [["ablation=del_cytokines,del_clotting", "protocol=paper,honest"]],
    "fig8": [["factors=1234,4", "horizon=1,2", "protocol=honest"], ["factors=1234", "horizon=1,2", "protocol=paper"]],
    "transfer": [["protocol=paper,honest"]],
    "audit": [[]],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic data, 2 folds, 2 epochs")
    parser.add_argument("--only", nargs="*", choices=list(SWEEPS), help="run these artefacts only")
    parser.add_argument("--sweep-root", default="multirun/reproduce", help="where Hydra writes the sweeps")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    sweeps = QUICK_SWEEPS if args.quick else SWEEPS
    for name in args.only or sweeps:
        for sweep in sweeps[name]:
            sweep_dir = f"hydra.sweep.dir={args.sweep_root}/{name}/${{now:%Y-%m-%d_%H-%M-%S}}"
            cmd = [sys.executable, str(ROOT / "run.py"), "-m", f"experiment={name}", *sweep,
                   *(QUICK if args.quick else []), sweep_dir]
            print(f"== {name}: {' '.join(sweep)}", flush=True)
            done = subprocess.run(cmd, cwd=ROOT)
            if done.returncode != 0:
                print(f"error: {name} failed (exit {done.returncode})", file=sys.stderr)
                return done.returncode
    print(f"reproduce: all runs done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
