"""Where the project reads its configs and keeps its store and caches.

From a source checkout (an editable install, `make install`) that is the checkout; from a
non-editable install (a wheel in site-packages) the configs are the package's own copy and the
store and caches go into `$PRCRS_HOME`, else the current folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

PACKAGE = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE / "conf"  # the Hydra configs; `conf/` at the checkout's root links here
SOURCE_ROOT = PACKAGE.parent  # the checkout, when there is one
HOME_ENV = "PRCRS_HOME"


def in_checkout() -> bool:
    """True when the package runs from its source checkout (not from site-packages)."""
    return (SOURCE_ROOT / "pyproject.toml").is_file() and (SOURCE_ROOT / "run.py").is_file()


def home() -> Path:
    """Project folder for mlruns/, .cache/ and data/raw/: $PRCRS_HOME, else the checkout, else
    the current folder. The config's `paths.root_dir` (conf/paths/default.yaml)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser().resolve()
    return SOURCE_ROOT if in_checkout() else Path.cwd()


def raw_data_dir() -> Path:
    """Where the real sheets are looked for last: `paths.data_dir`'s default."""
    return home() / "data" / "raw"


def cache_dir() -> Path:
    """COVID-19 pretrained weights: `paths.cache_dir`'s default."""
    return home() / ".cache"


if not OmegaConf.has_resolver("prcrs_home"):  # ${prcrs_home:} in conf/paths/default.yaml
    OmegaConf.register_new_resolver("prcrs_home", lambda: str(home()))
