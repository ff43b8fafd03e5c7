"""Where the project reads its configs and keeps its store and caches.

From a source checkout (an editable install, `make install`) that is the checkout; from a
non-editable install (a wheel in site-packages) the configs are the package's own copy and the
store and caches go into `$PRCRS_HOME`, else the current folder.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE / "conf"  # the Hydra configs; `conf/` at the checkout's root links here
SOURCE_ROOT = PACKAGE.parent  # the checkout, when there is one
HOME_ENV = "PRCRS_HOME"


def in_checkout() -> bool:
    """True when the package runs from its source checkout (not from site-packages)."""
    return (SOURCE_ROOT / "pyproject.toml").is_file() and (SOURCE_ROOT / "run.py").is_file()


def home() -> Path:
    """Project folder for mlruns/, .cache/ and data/raw/: $PRCRS_HOME, else the checkout, else
    the current folder."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser().resolve()
    return SOURCE_ROOT if in_checkout() else Path.cwd()
