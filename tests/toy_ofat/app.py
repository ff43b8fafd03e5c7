"""A toy Hydra task for the OFAT sweeper test: returns -(x - 2)^2 - (y - 3)^2."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=".", config_name="toy")
def main(cfg: DictConfig) -> float:
    return -((cfg.x - 2) ** 2) - (cfg.y - 3) ** 2


if __name__ == "__main__":
    main()
