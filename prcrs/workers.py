"""Fold worker processes, forked from a server that imported the training stack once.

`prestart()` launches a multiprocessing fork server that imports the engine, the networks and
Lightning (about 7 s of one core on the reference machine) in the background, while the caller
goes on loading data and opening the MLflow store. Every worker is then a fork of that server,
ready at once, instead of a fresh interpreter importing everything again. Workers live as long
as the process, so the CVs of a sweep or of the reproduction reuse them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor

from prcrs.models.threads import usable_cpus

PRELOAD = {"tabular": ["prcrs.engine"], "deep": ["prcrs.engine", "prcrs.models.backbones", "prcrs.models.transfer"]}
_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def _context():
    if "forkserver" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def prestart(kind: str = "deep") -> None:
    """Start the fork server importing what a `kind` model's folds need (Lightning for deep
    ones), without waiting for it. The first call of a process decides."""
    context = _context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        context.set_forkserver_preload(PRELOAD.get(kind, PRELOAD["deep"]))
        forkserver.ensure_running()


def _init_worker(threads: int, owner: int) -> None:
    """Worker initializer: BLAS/OpenMP pools of `threads` threads (no oversubscription), Ctrl-C
    left to the parent, which stops the workers (no traceback from each of them), and a watch on
    the `owner` process: if it dies, even by SIGKILL, the worker exits within a second instead of
    training on for nobody."""
    import signal
    import threading

    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threadpool_limits(threads)
    threading.Thread(target=_exit_with, args=(owner,), daemon=True, name="owner-watch").start()


def _exit_with(owner: int, every: float = 0.5) -> None:
    import time

    while True:
        time.sleep(every)
        try:
            os.kill(owner, 0)
        except (ProcessLookupError, PermissionError):  # gone (or its pid reused by another user)
            os._exit(1)


def _pool_of(n_jobs: int) -> ProcessPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size != n_jobs:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        prestart()
        threads = max(1, usable_cpus() // n_jobs)
        _pool = ProcessPoolExecutor(n_jobs, mp_context=_context(), initializer=_init_worker,
                                    initargs=(threads, os.getpid()))
        _pool_size = n_jobs
    return _pool


def map_ordered(fn: Callable, jobs: Iterable[tuple], n_jobs: int) -> Iterator:
    """`fn(*job)` for every job, in `n_jobs` worker processes (here when n_jobs is 1); results
    come back in job order as each is ready. When anything goes wrong here (an exception from
    `fn`, Ctrl-C, a worker killed), the workers are stopped at once and replaced next time,
    rather than left training folds nobody will read."""
    from concurrent.futures import TimeoutError as Pending

    from prcrs import interrupts

    if n_jobs <= 1:
        for job in jobs:
            interrupts.check()
            yield fn(*job)
        return
    pool = _pool_of(n_jobs)
    futures = [pool.submit(fn, *job) for job in jobs]
    try:
        for future in futures:
            while True:
                try:
                    result = future.result(timeout=0.5)
                    break
                except Pending:
                    interrupts.check()  # a Ctrl-C a library swallowed still stops the wait
            yield result
    except BaseException:
        _discard_pool()
        raise


def _discard_pool() -> None:
    global _pool
    if _pool is None:
        return
    processes = getattr(_pool, "_processes", None) or {}  # no public way to stop workers before Python 3.14
    for process in list(processes.values()):
        process.kill()
    _pool.shutdown(wait=False, cancel_futures=True)
    _pool = None
