"""The MLflow store: where it is, experiments created safely, finished configs found for resume."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from pathlib import Path

from prcrs import paths
from prcrs.errors import PrcrsError


def tracking_uri(configured: str | None = None) -> str:
    """The URI asked for (a flag or `logger.tracking_uri`), else $MLFLOW_TRACKING_URI, else
    sqlite:///<project home>/mlruns/mlflow.db (`paths.home`)."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{paths.home() / 'mlruns' / 'mlflow.db'}"


def use_store(configured: str | None = None) -> str:
    """Point this process's MLflow at `tracking_uri(configured)` and return that URI.

    MLflow 3's `set_tracking_uri` also writes $MLFLOW_TRACKING_URI; it is put back, or a later
    default lookup in the same process would follow the last store used, not the user's.
    """
    import mlflow

    uri = tracking_uri(configured)
    check_reachable(uri)
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    return uri


# A tracking server that does not answer is an error within seconds, not minutes of MLflow's retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """For an http(s) store: PrcrsError within `timeout` s when nothing answers at its address."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in {"http", "https"}:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise PrcrsError(f"the MLflow tracking server {uri} does not answer ({exc.strerror or exc}): start it, or "
                         "unset MLFLOW_TRACKING_URI to use the local store") from None


def artifact_root(uri: str) -> str | None:
    """Absolute artifact folder for the default SQLite store; the server decides otherwise."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def store_lock(configured: str | None = None):
    """A lock across processes on a local SQLite store (a no-op for a server, which serializes)."""
    uri = tracking_uri(configured)
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    return _lock(Path(uri.removeprefix("sqlite:///")).with_suffix(".lock"))


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def setup(experiment: str, configured_uri: str | None = None) -> str:
    """Point MLflow at the store and create `experiment` once, under a lock (parallel sweeps).

    Returns the experiment id.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    uri = use_store(configured_uri)
    db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    with store_lock(configured_uri):
        if db is not None and not db.exists():
            _create_store(db)
        try:
            found = mlflow.get_experiment_by_name(experiment)
            if found is not None:
                return found.experiment_id
            return mlflow.create_experiment(experiment, artifact_location=artifact_root(uri))
        except (MlflowException, SQLAlchemyError) as exc:
            if db is None:
                raise
            raise PrcrsError(f"the MLflow store {db} cannot be opened ({str(exc).splitlines()[0][:200]}); if a "
                             f"process was killed while it was being made, move it aside (mv {db} {db}.broken) and "
                             "run again") from None


def _create_store(db: Path) -> None:
    """Make a new SQLite store under another name and rename it into place: a process killed
    while the tables are made leaves a stray temporary file, never a half-made store."""
    import mlflow

    db.parent.mkdir(parents=True, exist_ok=True)
    partial = db.with_name(f".{db.name}.{os.getpid()}.creating")
    try:
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{partial}").search_experiments(max_results=1)
        os.replace(partial, db)
    finally:
        partial.unlink(missing_ok=True)


def owner_tags() -> dict[str, str]:
    """Tags naming the process that logs a run, so that a later start can tell it died."""
    import socket

    return {"pid": str(os.getpid()), "host": socket.gethostname()}


def reap_dead_runs(experiment_id: str) -> int:
    """Mark KILLED the RUNNING runs of this host whose process is gone (killed, even by SIGKILL,
    or the machine restarted): they would otherwise stay RUNNING forever. Returns how many."""
    import mlflow

    host = owner_tags()["host"]
    runs = mlflow.search_runs([experiment_id], output_format="list",
                              filter_string=f"attributes.status = 'RUNNING' and tags.host = '{host}'")
    reaped = 0
    for run in runs:
        pid = int(run.data.tags.get("pid", "0"))
        try:
            os.kill(pid, 0)
            continue  # its process lives: a run in progress
        except (ProcessLookupError, PermissionError, OverflowError):
            mlflow.MlflowClient().set_terminated(run.info.run_id, status="KILLED")
            reaped += 1
    return reaped


def running_run(experiment_id: str, config_hash: str):
    """The RUNNING parent run of a config (call `reap_dead_runs` first), or None."""
    import mlflow

    runs = mlflow.search_runs([experiment_id], output_format="list", max_results=1,
                              filter_string=f"tags.config_hash = '{config_hash}' and tags.role = 'cv_parent' "
                                            "and attributes.status = 'RUNNING'")
    return runs[0] if runs else None


def finished_run(experiment_id: str, config_hash: str):
    """The finished parent run of a config, or None: sweeps skip what is already done."""
    import mlflow

    runs = mlflow.search_runs([experiment_id], output_format="list", max_results=1,
                              filter_string=f"tags.config_hash = '{config_hash}' and tags.role = 'cv_parent' "
                                            "and attributes.status = 'FINISHED'")
    return runs[0] if runs else None


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=paths.SOURCE_ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
