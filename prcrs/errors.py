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
