"""Ctrl-C that cannot be lost: the SIGINT handler records the request as well as raising
KeyboardInterrupt, so that when a library swallows the exception (a Ctrl-C that lands inside a
SQLite call comes back as sqlite's "interrupted" error, which a store may retry), the run still
stops at the next `check()`: while it waits for fold workers (every half second), and at each
fold and run boundary. `prcrs.errors.say` clears the request once it has been answered. A
Ctrl-C that lands in a finalizer (a weakref callback, `__del__`) cannot stop anything there:
Python would print it as an ignored exception with a traceback; it is recorded all the same and
answered at the next `check()`, so nothing is printed for it. Inside `held()` (a store write) a
Ctrl-C is recorded and not raised: a write cut in half keeps SQLite's lock on its connection,
and the run could not then be ended (`database is locked`); it is raised as the write ends."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_asked = threading.Event()
_holding = 0  # depth of `held()` blocks in the main thread, where Python runs the handler


def _handler(signum, frame):
    _asked.set()
    if not _holding:
        raise KeyboardInterrupt


@contextmanager
def held() -> Iterator[None]:
    """A block a Ctrl-C must not cut in half (a store write): one pressed inside is recorded, and
    raised as KeyboardInterrupt when the outermost block ends without an error."""
    global _holding
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1
    if not _holding:
        check()


def _quiet(hook):
    """`sys.unraisablehook` `hook`, silent for a recorded Ctrl-C raised inside a finalizer."""
    def unraisable(event):
        if isinstance(event.exc_value, KeyboardInterrupt) and _asked.is_set():
            return  # recorded: the next check() stops the run
        hook(event)

    unraisable.quiet = True
    return unraisable


def install() -> None:
    """Use the recording handler for SIGINT (in the main thread, where Python takes signals;
    elsewhere nothing changes), and take SIGINT even if the process was started with it blocked
    (a blocked signal mask is inherited across exec: a Ctrl-C would wait forever). An ignored
    SIGINT (`nohup`, a background job) stays ignored. A Ctrl-C raised inside a finalizer is
    recorded and not printed (`_quiet`)."""
    if not getattr(sys.unraisablehook, "quiet", False):
        sys.unraisablehook = _quiet(sys.unraisablehook)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not _handler:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _handler)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def check() -> None:
    """KeyboardInterrupt if Ctrl-C was pressed and not yet answered."""
    if _asked.is_set():
        raise KeyboardInterrupt


def asked() -> bool:
    """True while a Ctrl-C is pending (pressed, not yet answered), even one a library swallowed."""
    return _asked.is_set()


def answered() -> None:
    _asked.clear()
