"""The MLflow store: where it is, experiments created safely, finished configs found for resume."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
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
    db = local_db(uri)
    for attempt in range(OPEN_ATTEMPTS):
        with store_lock(configured_uri):
            if db is not None:
                _make_or_wait(db)
            try:
                found = mlflow.get_experiment_by_name(experiment)
                if found is not None:
                    return found.experiment_id
                from prcrs.tracking.runs_view import experiment_tags  # the UI opens it on its runs

                return mlflow.create_experiment(experiment, artifact_location=artifact_root(uri),
                                                tags=experiment_tags())
            except (MlflowException, SQLAlchemyError) as exc:
                if db is None:
                    raise
                if not (attempt + 1 < OPEN_ATTEMPTS and _transient(exc)):
                    first = str(exc).splitlines()[0][:200]
                    raise PrcrsError(f"the MLflow store {db} cannot be opened ({first}); if a process was killed "
                                     f"while it was being made, move it aside (mv {db} {db}.broken) and run "
                                     "again") from None
        time.sleep(0.2 * (attempt + 1))  # another process (the UI, a reader) is making or migrating it


OPEN_ATTEMPTS = 10
STORE_QUIET_S = 10.0  # a store unchanged this long, not at MLflow's schema, is nobody's work in progress
STORE_PATIENCE_S = 120.0  # the longest wait for another process to finish making the store


def local_db(uri: str) -> Path | None:
    """The SQLite file of a local store, or None for a server."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def open_store(configured_uri: str | None = None) -> str:
    """Point MLflow at the store, made first if it is a local one not there yet, or waited for if
    another process is making it now; the URI. Call it before any MLflow client opens a store:
    MLflow makes a missing SQLite store's tables itself, unlocked, and two processes that do so at
    once break each other's schema migration."""
    uri = use_store(configured_uri)
    db = local_db(uri)
    if db is not None:
        with store_lock(configured_uri):
            _make_or_wait(db)
    return uri


def _make_or_wait(db: Path) -> None:
    """Under the store lock: make a missing store, or wait while another process (the UI, a
    reader polling it) is migrating one that it made."""
    if not db.exists():
        _create_store(db)
    settle(db)


def settle(db: Path, quiet: float = STORE_QUIET_S, patience: float = STORE_PATIENCE_S) -> None:
    """Return once the SQLite store `db` is at MLflow's schema head, or has not changed for `quiet`
    s (an older store), or is no SQLite file at all (MLflow names both), waiting at most `patience` s."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    head = _get_latest_schema_revision()
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            if schema_version(db) == head or time.time() - _last_change(db) >= quiet:
                return
        except ValueError:  # not a store: nobody is making it
            return
        time.sleep(0.1)


def schema_version(db: Path) -> str | None:
    """The MLflow schema revision of the SQLite file `db`, read without migrating it; None while it
    has none (being made, or locked by its maker). ValueError for a file that is no SQLite database."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise ValueError(f"{db} is not an SQLite file") from None
        return None
    return row[0] if row else None


def _last_change(db: Path) -> float:
    """The newest modification time (s since the epoch) of `db` and its rollback journal or WAL."""
    times = [p.stat().st_mtime for p in (db, db.with_name(db.name + "-journal"), db.with_name(db.name + "-wal"))
             if p.exists()]
    return max(times, default=0.0)


def _transient(exc: Exception) -> bool:
    """A store another process is making, migrating or writing now: locked, tables or columns half
    made (two processes' schema migrations meet)."""
    text = str(exc).lower()
    return any(s in text for s in ("locked", "already exists", "no such table", "no such column", "readonly", "busy",
                                   "duplicate column", "alembic"))


def _create_store(db: Path) -> None:
    """Make a new SQLite store under another name and link it into place only if no store is
    there yet: a process killed while the tables are made leaves a stray temporary file, never a
    half-made store, and a store that another process (the UI, a reader polling it) made meanwhile
    is used as it is, never replaced under that process's open connection. The tables come from
    `empty_store_template` when it is there."""
    import mlflow

    db.parent.mkdir(parents=True, exist_ok=True)
    partial = db.with_name(f".{db.name}.{os.getpid()}.creating")
    try:
        template = empty_store_template()
        copied = _copy_template(template, partial)
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{partial}").search_experiments(max_results=1)
        if not copied:
            _keep_template(partial, template)
        try:
            os.link(partial, db)  # atomic, and fails where a store already is
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: rename, if still nobody made one
            if not db.exists():
                os.replace(partial, db)
    finally:
        partial.unlink(missing_ok=True)


def empty_store_template() -> Path:
    """Where a new store's tables are kept once made (<project home>/.cache/mlflow-store/): MLflow's
    schema migrations take seconds, a copy milliseconds. One file per MLflow version and schema
    head, without the default experiment, which MLflow adds when the copy is first opened (its
    artifact folder then follows where that store is used, as in a store MLflow makes)."""
    import mlflow
    from mlflow.store.db.utils import _get_latest_schema_revision

    return paths.cache_dir() / "mlflow-store" / f"mlflow-{mlflow.__version__}-{_get_latest_schema_revision()}.db"


def _copy_template(template: Path, partial: Path) -> bool:
    """Copy the template into `partial` if it is there and at MLflow's schema head; False when
    MLflow is to make the tables."""
    import shutil

    from mlflow.store.db.utils import _get_latest_schema_revision

    try:
        if schema_version(template) != _get_latest_schema_revision():
            return False
        shutil.copyfile(template, partial)
    except (OSError, ValueError):  # none yet, unreadable or no SQLite file: made again
        return False
    return True


def _keep_template(made: Path, template: Path) -> None:
    """Keep the tables of the new store `made` as the template, its default experiment left out.
    A cache: where it cannot be written, MLflow makes each store as before."""
    import shutil
    import sqlite3

    work = template.with_name(f".{template.name}.{os.getpid()}.writing")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made, work)
        with contextlib.closing(sqlite3.connect(work)) as con, con:
            con.execute("DELETE FROM experiments WHERE experiment_id = 0")
        os.replace(work, template)  # whole or not at all
    except (OSError, sqlite3.Error):
        pass
    finally:
        work.unlink(missing_ok=True)


def running_run(experiment_id: str, config_hash: str):
    """The RUNNING parent run of a config (call `reap_dead_runs` first), or None."""
    import mlflow

    runs = mlflow.search_runs([experiment_id], output_format="list", max_results=1,
                              filter_string=f"tags.config_hash = '{config_hash}' and tags.role = 'cv_parent' "
                                            "and attributes.status = 'RUNNING'")
    return runs[0] if runs else None


def finished_run(experiment_id: str, config_hash: str, code: str | None = None):
    """The finished parent run of a config, or None: sweeps skip what is already done. With
    `code` (a code fingerprint), the newest run made by that code if there is one, else the newest.
    A run marked FINISHED without its summary (ended by a process exit before its results were
    logged) is not a finished run."""
    import mlflow

    where = f"tags.config_hash = '{config_hash}' and tags.role = 'cv_parent' and attributes.status = 'FINISHED'"
    for extra in ([f" and tags.code_fingerprint = '{code}'"] if code else []) + [""]:
        runs = mlflow.search_runs([experiment_id], output_format="list", max_results=20,
                                  order_by=["attributes.start_time DESC"], filter_string=where + extra)
        if complete := [run for run in runs if "mean_test_auroc" in run.data.metrics]:
            return complete[0]
    return None


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=paths.SOURCE_ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
