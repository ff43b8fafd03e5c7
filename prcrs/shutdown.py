"""A command's end: what the interpreter's exit can leave out."""

from __future__ import annotations

import gc
import sys
from typing import NoReturn


def exit_with(code: int | None) -> NoReturn:
    """End the process with exit status `code`, every object left out of the interpreter's last
    garbage collection (`gc.freeze`): that walk over all that the imports made (torch, scikit-learn,
    MLflow) takes over a second on two cores. Outputs and stores are closed by then; the atexit
    handlers (logging, MLflow, the fold workers) still run. For a process's own end only
    (`run.py`, the `prcrs` command), never inside a library call."""
    gc.freeze()
    sys.exit(code)
