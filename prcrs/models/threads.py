"""How many threads a prediction may use (`prediction_threads`): 1 by default, since the fold
workers already share the cores; a large batch outside them (a table through the platform) may
use them all. A forest spreads its blocks of rows over them (`prcrs.models.forests`), a network
its batch in parts of rows (`prcrs.models.deep.DeepModel`); each row is computed as without them.

    >>> with prediction_threads(2):
    ...     PREDICT_THREADS.get()
    2
    >>> PREDICT_THREADS.get()
    1
"""

from __future__ import annotations

import contextlib
import contextvars
import os

PREDICT_THREADS = contextvars.ContextVar("predict_threads", default=1)


@contextlib.contextmanager
def prediction_threads(n: int):
    """Predict on `n` threads inside the block (see the module)."""
    token = PREDICT_THREADS.set(max(1, int(n)))
    try:
        yield
    finally:
        PREDICT_THREADS.reset(token)


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity (a container or `taskset` may allow fewer
    than the machine has), else the machine's count; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this system
        return max(1, os.cpu_count() or 1)
