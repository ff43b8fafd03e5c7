"""Run one experiment (K-fold CV of one config) or a sweep (`-m`), logged to MLflow.

    python run.py model=prcrs ablation=del_cytokines horizon=1 protocol=honest
    python run.py -m model=cnn,transformer,squeezeformer,prcrs
"""

from __future__ import annotations

import sys

try:  # Ctrl-C during the imports (seconds) is one line too, before the package that prints it is in
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    import prcrs.models.catalogue  # noqa: F401  ${models:<study>}, read by the experiment configs' sweeps
    from prcrs.errors import say
except KeyboardInterrupt:
    print("interrupted while starting: nothing was run", file=sys.stderr)
    sys.exit(130)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        from prcrs.evaluate import evaluate

        hydra_cfg = HydraConfig.get()
        evaluation = evaluate(cfg, list(hydra_cfg.overrides.task), hydra_cfg.runtime.output_dir)
        return evaluation.score(cfg.get("optimized_metric", "mean_test_auroc"))  # what a sweeper optimizes
    except BaseException as exc:  # one line for what the user can fix, as at every front door
        code = say(exc)
        if code is None:
            raise
        sys.exit(code)


if __name__ == "__main__":
    try:
        from prcrs.config_checks import check_command_line

        check_command_line(sys.argv[1:])  # an unknown key is one line, before Hydra's multi-line message
        main()
    except (KeyboardInterrupt, Exception) as exc:  # Ctrl-C while Hydra composes, or a bad key: one line
        code = say(exc)
        if code is None:
            raise
        sys.exit(code)
    from prcrs.shutdown import exit_with

    exit_with(0)
