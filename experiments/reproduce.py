"""`make reproduce`: every run behind the paper's tables and figures, then `prcrs report`.

Each artefact is a Hydra experiment config (conf/experiment/<name>.yaml) that holds its own sweep
(`hydra.sweeper.params`, so `python run.py -m experiment=table2` runs Table 2 with any launcher).
Here the runs are composed and evaluated in this one process, so the fold workers start and the
data load once, not once per sweep. An experiment that is a search (its own sweeper, as the
tuned comparison's TPE) runs as `python run.py -m experiment=<name>`, its sweep folder beside
the store; its studies resume from their Optuna storage. Finished configs are skipped
(resume), so an interrupted reproduction picks up where it stopped; a failing run is reported
and the others still run. `--quick` (the tests) runs the same sweeps on synthetic data with 2
folds and 2 epochs into $MLFLOW_TRACKING_URI, by default mlruns/quick.db (not the project's store),
caching pretrained weights beside that store (`quick_cache`), not in the project's `.cache/`.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import time
from pathlib import Path

from prcrs.errors import say

ROOT = Path(__file__).resolve().parents[1]


def artefacts() -> tuple[str, ...]:
    """The experiment configs (conf/experiment/<name>.yaml) the report's sections read, in order."""
    from prcrs.report import sections

    return sections.experiments()


QUICK = ["data=synthetic", "data.n_patients=80", "cv.folds=2", "trainer.max_epochs=2", "trainer.patience=1",
         "cv.explain_rows=20",
         "trainer.min_epochs=1"]
# Quick mode (the tests) sweeps fewer values so that every table and figure is still drawn: these,
# and the models whose catalogue lists the study under `quick` (`quick_sweep`).
QUICK_SWEEPS: dict[str, list[str]] = {
    "table2": ["protocol=paper,honest"],
    "table3": ["ablation=del_cytokines,del_clotting", "protocol=paper,honest"],
    "fig8": ["factors=1234,4", "horizon=1,2"],
    "fig8_paper": ["factors=1234", "horizon=1,2"],
    "history": ["history=none,trends", "horizon=0,1"],
    "history_networks": ["history=none,days", "horizon=1"],
    "clinical": ["horizon=1,2"],
    "tuned": ["horizon=1", "history=lags", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_startup_trials=2",
              "hydra.sweeper.final_seeds=[0,1]"],
}


def quick_sweep(experiment: str) -> list[str] | None:
    """The quick reproduction's sweep of `experiment`; None: its full sweep."""
    from prcrs.models import catalogue

    if experiment not in QUICK_SWEEPS:
        return None
    models = catalogue.names(study=experiment, quick=True)
    return ([f"model={','.join(models)}"] if models else []) + QUICK_SWEEPS[experiment]


def _composed(experiment: str):
    from hydra import compose, initialize_config_dir

    from prcrs import paths

    with initialize_config_dir(config_dir=str(paths.CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)


def sweep_of(experiment: str) -> list[str]:
    """The sweep an experiment config holds (`hydra.sweeper.params`, what `python run.py -m
    experiment=<name>` runs) as overrides: ["model=cnn,prcrs", "protocol=paper,honest"]."""
    return [f"{key}={values}" for key, values in (_composed(experiment).hydra.sweeper.params or {}).items()]


def is_search(experiment: str) -> bool:
    """True when the experiment's sweeper chooses its runs (the tuned comparison's TPE): it runs
    as a whole through `python run.py -m`, not config by config."""
    return not str(_composed(experiment).hydra.sweeper._target_).startswith("hydra._internal.core_plugins")


def run_search(experiment: str, overrides: list[str], sweep_dir: Path) -> int:
    """`python run.py -m experiment=<name> <overrides>` in a process of its own; its exit code."""
    import subprocess

    cmd = [sys.executable, str(ROOT / "run.py"), "-m", f"experiment={experiment}", *overrides,
           f"hydra.sweep.dir={sweep_dir}"]
    return subprocess.run(cmd, cwd=ROOT).returncode


def expand(sweep: list[str]) -> list[list[str]]:
    """Hydra sweep overrides to the list of runs, parsed by Hydra as `-m` would:
    ["a=1,2", "b=x"] -> [["a=1", "b=x"], ["a=2", "b=x"]]."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
               else [o.input_line] for o in OverridesParser.create().parse_overrides(sweep)]
    return [list(run) for run in itertools.product(*choices)]


def quick_cache(tracking_uri: str) -> Path:
    """Where a quick reproduction caches pretrained weights: beside its store (a sqlite file),
    else in a new temporary folder; never in the project's `.cache/`."""
    import tempfile

    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent / "quick-cache"
    return Path(tempfile.mkdtemp(prefix="prcrs-quick-cache-"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic data, 2 folds, 2 epochs")
    parser.add_argument("--only", nargs="*", choices=artefacts(), help="run these artefacts only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s")
    from prcrs.evaluate import evaluate
    from prcrs.run_config import compose_config

    quick = []
    if args.quick:  # never into the project's store, where `prcrs report` would mix it with real runs
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlruns' / 'quick.db'}")
        quick = [*QUICK, f"paths.cache_dir={quick_cache(os.environ['MLFLOW_TRACKING_URI'])}"]
    start = time.perf_counter()
    names = args.only or artefacts()
    searches = [name for name in names if is_search(name)]
    runs = [[f"experiment={name}", *run, *quick] for name in names if name not in searches
            for run in expand((args.quick and quick_sweep(name)) or sweep_of(name))]
    failed = []
    for i, overrides in enumerate(runs, 1):
        print(f"== [{i}/{len(runs)}] {' '.join(overrides)}", flush=True)
        try:
            evaluate(compose_config(overrides), overrides)
        except BaseException as exc:  # reported and passed: the other runs still happen
            code = say(exc, " ".join(overrides))
            if code == 130:
                return 130
            if code is None:
                if not isinstance(exc, Exception):
                    raise
                # a bug: one line with its type here too, so that the other runs go on
                print(f"error: {' '.join(overrides)}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            failed.append(overrides)
    from prcrs.tracking.store import tracking_uri

    uri = tracking_uri()
    sweeps = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else ROOT / "outputs"
    for name in searches:
        print(f"== search: python run.py -m experiment={name}", flush=True)
        code = run_search(name, [*((args.quick and quick_sweep(name)) or []), *quick], sweeps / "sweeps" / name)
        if code == 130:
            return 130
        if code:
            failed.append([f"experiment={name}"])
    done = len(runs) + len(searches) - len(failed)
    print(f"reproduce: {done} of {len(runs) + len(searches)} runs and searches done in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
