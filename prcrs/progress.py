"""Progress a user can see: a tqdm bar on a terminal, one log line per step elsewhere (CI logs,
multirun job logs, pipes), so that nothing spams a log with redrawn bars and nothing is silent.

    with stage("loading data"):
        cohort = load()
    steps = Steps(5, "folds")
    steps.done("fold 1/5: AUROC 0.91")
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager

log = logging.getLogger("prcrs")


def interactive() -> bool:
    """A person watches a terminal (stderr is a TTY)."""
    return sys.stderr.isatty()


@contextmanager
def stage(what: str):
    """Say `what` starts and, when it ends, how long it took."""
    log.info(f"{what} ...")
    start = time.perf_counter()
    yield
    log.info(f"{what}: done in {time.perf_counter() - start:.1f} s")


class Steps:
    """`total` steps of one task: a bar on a terminal, else a log line per step."""

    def __init__(self, total: int, what: str):
        self.total, self.what, self.count = total, what, 0
        self.bar = None
        if interactive():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit="", file=sys.stderr, dynamic_ncols=True, leave=False)

    def done(self, message: str = "") -> None:
        """One step done; `message` says what it gave."""
        self.count += 1
        if self.bar is None:
            log.info(message or f"{self.what} {self.count}/{self.total}")
            return
        self.bar.update(1)
        if message:
            self.bar.write(message, file=sys.stderr)
        if self.count >= self.total:
            self.bar.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
