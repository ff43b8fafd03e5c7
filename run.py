"""Run one experiment (K-fold CV of one config) or a sweep (`-m`), logged to MLflow.

    python run.py model=prcrs ablation=del_cytokines horizon=1 protocol=honest
    python run.py -m model=cnn,transformer,squeezeformer,prcrs
"""

from __future__ import annotations

import sys

from prcrs.errors import INTERRUPTED, PrcrsError

try:  # Ctrl-C during the imports (seconds) is one line too
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig
    from omegaconf.errors import OmegaConfBaseException
except KeyboardInterrupt:
    print(INTERRUPTED, file=sys.stderr)
    sys.exit(130)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        from prcrs.engine import run

        hydra_cfg = HydraConfig.get()
        return run(cfg, list(hydra_cfg.overrides.task), hydra_cfg.runtime.output_dir)
    except PrcrsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OmegaConfBaseException as exc:  # a config without a key the run reads (e.g. model=base/deep)
        print(f"error: config {exc.full_key}: {str(exc).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
