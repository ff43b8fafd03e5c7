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

PREDICT_THREADS = contextvars.ContextVar("predict_threads", default=1)


@contextlib.contextmanager
def prediction_threads(n: int):
    """Predict on `n` threads inside the block (see the module)."""
    token = PREDICT_THREADS.set(max(1, int(n)))
    try:
        yield
    finally:
        PREDICT_THREADS.reset(token)
