"""Equal-budget tuning: Optuna's TPE as a Hydra sweeper, one study per grid point.

    python run.py -m hydra/sweeper=tpe search=tpe model=forest history=lags hydra.sweeper.n_trials=50
    python run.py -m experiment=tuned             # every family, horizon and input set (its grid)

1. The grid (`hydra.sweeper.grid`, and any comma list on the command line: model=forest,tabm)
   makes one study per combination; a key given on the command line replaces the grid's axis
   (`experiment=tuned horizon=1` tunes at horizon 1 only).
2. Each study searches its model's space, `conf/search/space/<space>.yaml`, where `<space>` is
   the model's `catalogue.space` or else its name (key -> Hydra sweep:
   `interval(a, b)`, `tag(log, interval(a, b))`, `int(interval(a, b))`, `range(a, b)`,
   `choice(a, b)`), plus `hydra.sweeper.params` and any sweep of that form on the command line.
3. A trial is one job: a CV of the config with the sampled values. Its return is the task's
   optimized metric, which `search=tpe` sets to the mean inner-validation AUROC, so test folds
   never choose. Every family gets `n_trials` trials.
4. The best trial's config is then cross-validated at each of `final_seeds` (folds and
   initialisation; at the searched seed it is the stored trial itself), and that test-fold CV is
   reported apart, never used to choose.

Studies live in an Optuna storage (default: `optuna.db` beside a local MLflow store); a sweep
that is run again after an interrupt continues its studies: finished trials are kept, trials left
running are run again (their MLflow runs resume), and a finished study launches only its final
job. Each study is also a `search` run in MLflow (chosen values, search score, test-fold CV of the
chosen config, the trials table), and the sweep writes `<sweep dir>/tpe_search.yaml`.
"""


import hashlib
import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from prcrs.tracking.searches import chosen_summary, job_run_id, log_search

log = logging.getLogger(__name__)


@dataclass
class TPESweeperConf:
    _target_: str = "hydra_plugins.tpe_sweeper.tpe_sweeper.TPESweeper"
    n_trials: int = 20  # trials of every study: the budget each family gets
    n_startup_trials: int = 10  # random trials before TPE models the scores (fewer when n_trials is less)
    batch: int = 1  # trials launched together (a parallel launcher runs them at once)
    seed: int = 0  # the sampler's
    direction: str = "maximize"
    grid: dict[str, str] = field(default_factory=dict)  # key -> comma list: one study per combination
    params: dict[str, str] = field(default_factory=dict)  # searched in every study, beside its model's space
    storage: str | None = None  # an Optuna storage URL; default: sqlite optuna.db beside the MLflow store
    final_seeds: list[int] = field(default_factory=list)  # the chosen config's CV seeds; none: the searched one


ConfigStore.instance().store(group="hydra/sweeper", name="tpe", node=TPESweeperConf, provider="prcrs")


def distribution(key: str, sweep):
    """The Optuna distribution of one Hydra sweep: choice -> categorical, range -> integers (its
    step), interval -> floats (`tag(log, ...)`: log scale; `int(interval(...))`: integers)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    log_scale = "log" in (sweep.tags or set())
    if isinstance(sweep, ChoiceSweep):
        return CategoricalDistribution(list(sweep.list))
    if isinstance(sweep, RangeSweep):
        step = sweep.step or 1
        if any(isinstance(v, float) for v in (sweep.start, sweep.stop, step)):
            raise ValueError(f"{key}: range() of whole numbers only; use interval(a, b) for real numbers")
        start, stop, step = int(sweep.start), int(sweep.stop), int(step)
        return IntDistribution(start, start + (stop - 1 - start) // step * step, step=step, log=log_scale)
    if isinstance(sweep, IntervalSweep):
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):  # int(interval(a, b))
            return IntDistribution(sweep.start, sweep.end, log=log_scale)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    raise ValueError(f"{key}: not a search space (use interval, range or choice)")


class TPESweeper(Sweeper):
    def __init__(self, n_trials: int = 20, n_startup_trials: int = 10, batch: int = 1, seed: int = 0,
                 direction: str = "maximize", grid: dict[str, str] | None = None,
                 params: dict[str, str] | None = None, storage: str | None = None,
                 final_seeds: list[int] | None = None):
        for name, value, least in (("n_trials", n_trials, 1), ("n_startup_trials", n_startup_trials, 0),
                                   ("batch", batch, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"hydra.sweeper.{name} must be a whole number >= {least}, got {value!r}")
        if direction not in {"maximize", "minimize"}:
            raise ValueError(f"hydra.sweeper.direction must be maximize or minimize, got {direction!r}")
        self.n_trials, self.n_startup_trials, self.batch, self.seed = n_trials, n_startup_trials, batch, seed
        self.direction, self.storage = direction, storage
        self.grid, self.params = dict(grid or {}), dict(params or {})
        self.final_seeds = [int(seed) for seed in final_seeds or ()]
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def _parse(self, overrides: list[str]):
        return OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(overrides)

    def _split(self, arguments: list[str]) -> tuple[list[str], list[list[str]], dict[str, Any]]:
        """Fixed overrides, the grid's combinations (lists of overrides), and the searched sweeps
        given here (key -> Hydra sweep)."""
        fixed, axes, searched = [], {}, {}
        given = {o.get_key_element() for o in self._parse(list(arguments))}  # the command line replaces the grid's
        grid = [f"{k}={v}" for k, v in self.grid.items() if k not in given]
        for override in self._parse(grid + [f"{k}={v}" for k, v in self.params.items()] + list(arguments)):
            key = override.get_key_element()
            if not override.is_sweep_override():
                fixed.append(f"{key}={override.get_value_element_as_str()}")
            elif override.is_discrete_sweep() and override.value().simple_form:  # a,b,c: a grid axis
                axes[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
            else:
                searched[key] = override.value()
        return fixed, [list(c) for c in itertools.product(*axes.values())], searched

    def _space(self, job: DictConfig, searched: dict[str, Any]) -> dict[str, Any]:
        """The model's own space (conf/search/space/<catalogue.space or model>.yaml), then the
        sweeps given here."""
        from prcrs import paths

        model = OmegaConf.select(job, "model.name")
        space = {}
        if model is not None:
            name = (job.model.get("catalogue") or {}).get("space", model)
            path = Path(paths.CONFIG_DIR) / "search" / "space" / f"{name}.yaml"
            own = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}
            space = {o.get_key_element(): o.value() for o in self._parse([f"{k}={v}" for k, v in own.items()])}
        space.update(searched)
        if not space:
            raise ValueError(f"model={model} has no search space: add conf/search/space/{model}.yaml or sweeps "
                             "such as optimizer.lr=tag(log,interval(1e-4,1e-2))")
        return {key: distribution(key, sweep) for key, sweep in space.items()}

    def _storage(self) -> str:
        if self.storage:
            return self.storage
        from prcrs.tracking.store import tracking_uri

        uri = tracking_uri(self.config.logger.get("tracking_uri") if "logger" in self.config else None)
        if uri.startswith("sqlite:///"):
            return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).parent / 'optuna.db'}"
        return f"sqlite:///{Path(self.config.hydra.sweep.dir).parent / 'optuna.db'}"  # a remote MLflow store

    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        metric = self.config.get("optimized_metric")
        if metric is not None and "_test_" in str(metric):
            raise ValueError(f"TPE would choose on test folds (optimized_metric={metric}); add search=tpe, "
                             "which makes jobs return mean_val_auroc")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        fixed, points, searched = self._split(arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        storage = self._storage()
        studies = [self._study(fixed + point, point, searched, storage) for point in points]
        (sweep_dir / "tpe_search.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(studies)))
        return studies

    def _study(self, overrides: list[str], point: list[str], searched: dict[str, Any], storage: str) -> dict:
        import optuna
        from optuna.trial import TrialState

        job = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        space = self._space(job, searched)
        name = self._study_name(job, overrides, space)
        sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=min(self.n_startup_trials,
                                                                                   self.n_trials))
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction=self.direction,
                                    load_if_exists=True)
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # left by an interrupt
            study.enqueue_trial(stale.params, user_attrs={"rerun_of": stale.number})  # its MLflow run resumes
            study.tell(stale.number, state=TrialState.FAIL)
            study.set_user_attr(f"interrupted_{stale.number}", True)  # not counted in the budget
        while (left := self.n_trials - _spent(study)) > 0:
            trials = [study.ask(space) for _ in range(min(self.batch, left))]
            batch = [overrides + [_assign(k, v) for k, v in t.params.items()] for t in trials]
            self.validate_batch_is_legal(batch)
            returns = self.launcher.launch(batch, initial_job_idx=self.job_idx)
            self.job_idx += len(batch)
            for trial, ret in zip(trials, returns, strict=True):
                value = _score(ret)
                trial.set_user_attr("run_id", job_run_id(ret))
                if value is None:
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, value)
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not done:
            raise ValueError(f"every trial of {' '.join(point) or 'the study'} failed; see the jobs' logs")
        best = study.best_trial
        chosen = overrides + [_assign(k, v) for k, v in best.params.items()]
        finals = [chosen] if not self.final_seeds else [
            [o for o in chosen if not o.startswith("seed=")] + [f"seed={seed}"] for seed in self.final_seeds]
        returns = self.launcher.launch(finals, initial_job_idx=self.job_idx)  # a stored trial returns at once
        self.job_idx += len(finals)
        final_cv = [chosen_summary(r) for r in returns]
        record = {"study": name, "grid": point, "trials": _spent(study), "completed": len(done),
                  "chosen": dict(best.params), "search_score": best.value, "final_overrides": chosen,
                  "final_seeds": self.final_seeds, "final_cv": final_cv,
                  "final_runs": [job_run_id(r) for r in returns]}
        log.info(f"TPE {name}: {len(done)} trials, chose {best.params}; search score {best.value:.4f}; "
                 f"test-fold CV of that config (not used to choose): {final_cv}")
        self._log(record, study, job)
        return record

    def _log(self, record: dict, study, job: DictConfig) -> None:
        """The study as a `search` run: its trials table (one row a trial: number, state, score,
        values, MLflow run) and its record; the chosen config's CV averaged over its seeds."""
        import pandas as pd

        folder = Path(self.config.hydra.sweep.dir) / "tpe" / record["study"].replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        trials = pd.DataFrame([{"number": t.number, "state": t.state.name, "value": t.value,
                                **{f"params.{k}": v for k, v in t.params.items()},
                                "run_id": t.user_attrs.get("run_id")} for t in study.trials])
        trials.to_csv(folder / "trials.csv", index=False)
        (folder / "study.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(record)))
        cvs = [cv for cv in record["final_cv"] if cv]
        final = {k: sum(cv[k] for cv in cvs) / len(cvs) for k in (cvs[0] if cvs else {})
                 if all(k in cv for cv in cvs)}
        task = {k: str(OmegaConf.select(job, dotted)) for k, dotted in
                (("model", "model.name"), ("horizon", "horizon"), ("history", "history.name"))
                if OmegaConf.select(job, dotted) is not None}
        log_search(self.config, f"tpe {_task(job)}".strip(), record["chosen"], self.config.get("optimized_metric"),
                   record["search_score"], final, [folder / "trials.csv", folder / "study.yaml"],
                   tags={**task, "optuna_study": record["study"], "trials": str(record["trials"])})

    def _study_name(self, job: DictConfig, overrides: list[str], space: dict) -> str:
        """A name that changes with anything that changes a trial's score (the overrides, the
        space, the data loaded), readable by its study and task."""
        content = None
        if "data" in job:
            from prcrs.run_config import load_cart_for

            content = load_cart_for(job).content_id
        key = json.dumps({"overrides": sorted(overrides), "space": {k: repr(v) for k, v in space.items()},
                          "data": content, "direction": self.direction}, sort_keys=True)
        return f"{job.get('study', 'tpe')} {_task(job)} {hashlib.sha1(key.encode()).hexdigest()[:10]}".strip()


def _task(job: DictConfig) -> str:
    """'forest h1 lags': the model, horizon and history a study tunes (what the job has of them)."""
    parts = [OmegaConf.select(job, "model.name"), OmegaConf.select(job, "horizon"),
             OmegaConf.select(job, "history.name")]
    return " ".join(f"{'h' if i == 1 else ''}{p}" for i, p in enumerate(parts) if p is not None)


def _assign(key: str, value) -> str:
    """The override setting a searched value: `++`, so a space may set an option the config leaves
    at the library's default (an unknown one fails its trials, saying so)."""
    return f"++{key}={repr(value) if isinstance(value, float) else value}"


def _score(job_return) -> float | None:
    """The job's return, None when the job failed or returned NaN (a config that diverged)."""
    try:
        value = float(job_return.return_value)
    except Exception as exc:  # the job raised: a failed trial, with its reason in the log
        log.warning(f"trial failed: {type(exc).__name__}: {exc}")
        return None
    return None if math.isnan(value) else value


def _spent(study) -> int:
    """Trials of the budget used: completed, or failed other than by an interrupt."""
    from optuna.trial import TrialState

    return sum(t.state == TrialState.COMPLETE for t in study.trials) + _failed(study)


def _failed(study) -> int:
    from optuna.trial import TrialState

    interrupted = {int(k.split("_")[1]) for k in study.user_attrs if k.startswith("interrupted_")}
    return sum(t.state == TrialState.FAIL and t.number not in interrupted for t in study.trials)
