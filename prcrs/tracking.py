"""The MLflow store: where it is, experiments created safely, finished configs found for resume."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from pathlib import Path

from prcrs.data.cohort import PROJECT_ROOT

MLRUNS = PROJECT_ROOT / "mlruns"


def tracking_uri(configured: str | None = None) -> str:
    """The URI asked for (a flag or `logger.tracking_uri`), else $MLFLOW_TRACKING_URI, else
    sqlite:///<repo>/mlruns/mlflow.db."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{MLRUNS / 'mlflow.db'}"


def use_store(configured: str | None = None) -> str:
    """Point this process's MLflow at `tracking_uri(configured)` and return that URI.

    MLflow 3's `set_tracking_uri` also writes $MLFLOW_TRACKING_URI; it is put back, or a later
    default lookup in the same process would follow the last store used, not the user's.
    """
    import mlflow

    uri = tracking_uri(configured)
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    return uri


def artifact_root(uri: str) -> str | None:
    """Absolute artifact folder for the default SQLite store; the server decides otherwise."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


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

    uri = use_store(configured_uri)
    lock = Path(uri.removeprefix("sqlite:///")).with_suffix(".lock") if uri.startswith("sqlite:///") else None
    with _lock(lock) if lock else contextlib.nullcontext():
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        return mlflow.create_experiment(experiment, artifact_location=artifact_root(uri))


def finished_run(experiment_id: str, config_hash: str):
    """The finished parent run of a config, or None: sweeps skip what is already done."""
    import mlflow

    runs = mlflow.search_runs([experiment_id], output_format="list", max_results=1,
                              filter_string=f"tags.config_hash = '{config_hash}' and tags.role = 'cv_parent' "
                                            "and attributes.status = 'FINISHED'")
    return runs[0] if runs else None


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
