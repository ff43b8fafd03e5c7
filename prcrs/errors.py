"""Errors a user can act on. The CLI prints them as one line, never a traceback."""


INTERRUPTED = "interrupted: finished runs are kept in the store; the same command resumes after them"


class PrcrsError(Exception):
    """Base class: the message names what is wrong and where."""


class DataError(PrcrsError, ValueError):
    """Input data that cannot be used as given (file, layout, columns or values)."""


class ConfigError(PrcrsError, ValueError):
    """An option that does not exist or does not fit the data."""


class TrainingError(PrcrsError, RuntimeError):
    """A model that could not be trained as configured (e.g. it diverged)."""


def say(exc: BaseException, context: str = "") -> int | None:
    """What every front door (`run.py`, the `prcrs` CLI, `experiments/reproduce.py`) does with an
    exception: an error the user can act on, or Ctrl-C, is printed as one line on stderr and its
    exit code returned (2, or 130); anything else returns None, for the caller to raise (a bug
    keeps its traceback). `context` names what was running ("experiment=table2 model=cnn")."""
    import sys

    prefix = f"{context}: " if context else ""
    if isinstance(exc, KeyboardInterrupt):
        from prcrs import interrupts

        interrupts.answered()
        print(INTERRUPTED, file=sys.stderr, flush=True)
        return 130
    if isinstance(exc, PrcrsError):
        message = str(exc)
    elif isinstance(exc, MemoryError):  # numpy's _ArrayMemoryError included
        message = ("out of memory: give a smaller file, or `prcrs predict --no-explain` (explanations evaluate "
                   "each row about 350 times)")
    elif type(exc).__module__.startswith("omegaconf"):  # a config without a key the run reads
        message = f"config {getattr(exc, 'full_key', '')}: {str(exc).splitlines()[0]}"
    else:
        return None
    print(f"error: {prefix}{message}", file=sys.stderr, flush=True)
    return 2
