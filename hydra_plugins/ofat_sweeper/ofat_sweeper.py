"""One factor at a time (OFAT): the paper's hyperparameter search, as a Hydra sweeper.

    python run.py -m hydra/sweeper=ofat search=ofat \
        model.estimator.backbone.d=16,32,64 optimizer.lr=3e-4,1e-3,3e-3

1. Fix every parameter but one (at its first listed value, or at the choice made for it).
2. Launch one job per value of that parameter.
3. Keep the value with the best job return: the task's optimized metric, which `search=ofat`
   sets to the mean inner-validation AUROC, so test folds never choose hyperparameters.
4. Move to the next parameter, in the order given.

The path of decisions goes to `<sweep dir>/ofat_path.yaml` (and to MLflow when the task logs
there); the test-fold CV score of the chosen config is reported apart, read from the chosen
job's `summary.json`, never used to choose.
"""


import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from prcrs.tracking.searches import chosen_summary, log_search

log = logging.getLogger(__name__)


@dataclass
class OFATSweeperConf:
    _target_: str = "hydra_plugins.ofat_sweeper.ofat_sweeper.OFATSweeper"
    direction: str = "maximize"
    # parameter -> comma-separated values, searched in this order (before command-line sweeps)
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="ofat", node=OFATSweeperConf, provider="prcrs")


class OFATSweeper(Sweeper):
    def __init__(self, direction: str = "maximize", params: dict[str, str] | None = None):
        if direction not in {"maximize", "minimize"}:
            raise ValueError(f"direction must be maximize or minimize, got {direction!r}")
        self.direction = direction
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def _parse(self, arguments: list[str]) -> tuple[list[str], OrderedDict[str, list[str]]]:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        fixed, searched = [], OrderedDict()
        for override in parser.parse_overrides([f"{k}={v}" for k, v in self.params.items()] + list(arguments)):
            key = override.get_key_element()
            if override.is_sweep_override():
                if not override.is_discrete_sweep():
                    raise ValueError(f"OFAT needs a list of values for {key}, e.g. {key}=1,2,3")
                searched[key] = list(override.sweep_string_iterator())
            else:
                fixed.append(f"{key}={override.get_value_element_as_str()}")
        if not searched:
            raise ValueError("OFAT needs at least one parameter with several values, e.g. optimizer.lr=1e-4,1e-3")
        return fixed, searched

    def _better(self, a: float, b: float) -> bool:
        if isinstance(b, float) and math.isnan(b):
            return not (isinstance(a, float) and math.isnan(a))
        return a > b if self.direction == "maximize" else a < b

    def sweep(self, arguments: list[str]) -> Any:
        metric = self.config.get("optimized_metric")
        if metric is not None and "_test_" in str(metric):
            raise ValueError(f"OFAT would choose on test folds (optimized_metric={metric}); add search=ofat, "
                             "which makes jobs return mean_val_auroc")
        fixed, searched = self._parse(arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        chosen = OrderedDict((k, v[0]) for k, v in searched.items())
        path, job_idx, best_return = [], 0, None
        for key, values in searched.items():
            batch = [fixed + [f"{k}={chosen[k] if k != key else value}" for k in searched] for value in values]
            self.validate_batch_is_legal(batch)
            returns = self.launcher.launch(batch, initial_job_idx=job_idx)
            job_idx += len(batch)
            scores = [float(r.return_value) for r in returns]
            best = None
            for value, score, ret in zip(values, scores, returns, strict=True):
                if best is None or self._better(score, best[1]):
                    best = (value, score, ret)
            chosen[key] = best[0]
            best_return = best[2]
            path.append({"parameter": key, "values": values, "scores": scores, "chosen": best[0],
                         "score": best[1]})
            log.info(f"OFAT {key}: {dict(zip(values, scores, strict=True))} -> {best[0]}")
        final = {"chosen": dict(chosen), "search_score": path[-1]["score"], "path": path,
                 "final_overrides": fixed + [f"{k}={v}" for k, v in chosen.items()],
                 "final_cv": chosen_summary(best_return)}
        (sweep_dir / "ofat_path.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(final)))
        log.info(f"OFAT chose {dict(chosen)}; search score {final['search_score']:.4f}; "
                 f"test-fold CV of that config (not used to choose): {final['final_cv']}")
        log_search(self.config, "ofat search", final["chosen"], self.config.get("optimized_metric"),
                   final["search_score"], final["final_cv"], [sweep_dir / "ofat_path.yaml"])
        return final
