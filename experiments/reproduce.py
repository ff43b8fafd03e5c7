"""`make reproduce`: every run behind the paper's tables and figures, then `prcrs report`.

Each artefact is a Hydra experiment config (conf/experiment/<name>.yaml) swept over the values
below (Hydra's override syntax). The runs are composed and evaluated in this one process, so the
fold workers start and the data load once, not once per sweep. Finished configs are skipped
(resume), so an interrupted reproduction picks up where it stopped; a failing run is reported
and the others still run. `--quick` (the tests) runs the same sweeps on synthetic data with 2
folds and 2 epochs into $MLFLOW_TRACKING_URI, by default mlruns/quick.db (not the project's store).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import time
from pathlib import Path

from prcrs.errors import INTERRUPTED
from prcrs.models import DEEP, TABULAR

ROOT = Path(__file__).resolve().parents[1]
SWEEPS: dict[str, list[list[str]]] = {
    "table2": [[f"model={','.join(DEEP + TABULAR)}", "protocol=paper,honest"]],
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


def expand(sweep: list[str]) -> list[list[str]]:
    """Hydra sweep overrides to the list of runs, parsed by Hydra as `-m` would:
    ["a=1,2", "b=x"] -> [["a=1", "b=x"], ["a=2", "b=x"]]."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
               else [o.input_line] for o in OverridesParser.create().parse_overrides(sweep)]
    return [list(run) for run in itertools.product(*choices)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic data, 2 folds, 2 epochs")
    parser.add_argument("--only", nargs="*", choices=list(SWEEPS), help="run these artefacts only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s")
    from prcrs import engine

    if args.quick:  # never into the project's store, where `prcrs report` would mix it with real runs
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlruns' / 'quick.db'}")
    start = time.perf_counter()
    sweeps = QUICK_SWEEPS if args.quick else SWEEPS
    runs = [[f"experiment={name}", *run, *(QUICK if args.quick else [])]
            for name in args.only or sweeps for sweep in sweeps[name] for run in expand(sweep)]
    failed = []
    for i, overrides in enumerate(runs, 1):
        print(f"== [{i}/{len(runs)}] {' '.join(overrides)}", flush=True)
        try:
            engine.run(engine.compose_config(overrides), overrides)
        except KeyboardInterrupt:
            print(INTERRUPTED, file=sys.stderr)
            return 130
        except Exception as exc:  # reported and passed: the other runs still happen
            print(f"error: {' '.join(overrides)}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            failed.append(overrides)
    print(f"reproduce: {len(runs) - len(failed)} of {len(runs)} runs done in {time.perf_counter() - start:.0f} s",
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
