"""Which process owns a RUNNING run, and whether it still lives: a lock file per run on a local
store (`Lease`), else the owner's host, boot, PID and start time (`owner_tags`). Dead owners'
runs are marked KILLED (`reap_dead_runs`) so that a sweep resumes them."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from prcrs.tracking.store import tracking_uri


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str:
    """When process `pid` (of this PID namespace) started, in clock ticks since boot ('' when
    there is no such process): a PID and its start time name one process, even when the PID is
    reused (a container's PID 1, a busy host)."""
    stat = _read(f"/proc/{pid}/stat")
    return stat.rpartition(")")[2].split()[19] if stat else ""  # field 22, after the command's name


def owner_tags() -> dict[str, str]:
    """Tags naming the process that logs a run, so that a later start can tell it died: host,
    boot, PID and the process's start time."""
    import socket

    return {"pid": str(os.getpid()), "host": socket.gethostname(), "boot": _read("/proc/sys/kernel/random/boot_id"),
            "started": process_start(os.getpid())}


def _lease_path(run_id: str, configured: str | None = None) -> Path | None:
    uri = tracking_uri(configured)
    return Path(uri.removeprefix("sqlite:///")).parent / "leases" / f"{run_id}.lock" if uri.startswith(
        "sqlite:///") else None


class Lease:
    """A running run's lease on a local store: a POSIX lock on `<store folder>/leases/<run>.lock`,
    held by the owning process while it lives. The kernel drops it when that process dies, however
    (SIGKILL, a container's PID 1), and fork children do not inherit it; another process tells a
    dead owner by taking it (`lease_free`). No PID, clock or heartbeat is involved."""

    def __init__(self, run_id: str, configured: str | None = None):
        self.path, self.handle = _lease_path(run_id, configured), None
        if self.path is not None:  # locked under another name, then renamed: a lease file seen is a held one
            self.path.parent.mkdir(parents=True, exist_ok=True)
            held = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            self.handle = open(held, "a")
            fcntl.lockf(self.handle, fcntl.LOCK_EX)
            os.replace(held, self.path)  # the lock is the file's (its inode): it moves with it

    def release(self) -> None:
        if self.handle is not None:
            self.path.unlink(missing_ok=True)
            self.handle.close()
            self.handle = None


def lease_free(run_id: str, configured: str | None = None) -> bool | None:
    """Whether a run's lease is free, i.e. its owner is dead (True), held (False), or there is no
    lease to ask (None: a run of a server store, or one logged before leases were kept)."""
    path = _lease_path(run_id, configured)
    if path is None or not path.is_file():
        return None
    with open(path, "a") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.lockf(handle, fcntl.LOCK_UN)
    path.unlink(missing_ok=True)
    return True


def owner_alive(tags: dict[str, str], run_id: str | None = None, configured: str | None = None) -> bool:
    """Whether the process that logs a run still runs: by its lease (`Lease`) when the store keeps
    one; else, on this host and boot, by PID and start time (a reused PID is another process); a
    run of another host counts as alive."""
    import socket

    free = None if run_id is None else lease_free(run_id, configured)
    if free is not None:
        return not free
    if tags.get("host") != socket.gethostname():
        return True
    if tags.get("boot") and tags["boot"] != _read("/proc/sys/kernel/random/boot_id"):
        return False  # this host has restarted since: its processes are gone
    pid = int(tags.get("pid", "0") or 0)
    if pid <= 0:
        return False
    if tags.get("started"):  # where /proc tells a start time
        return process_start(pid) == tags["started"]
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError, OverflowError):
        return False


def reap_dead_runs(experiment_id: str, configured: str | None = None) -> int:
    """Mark KILLED the RUNNING runs of this host whose process is gone (killed, even by SIGKILL,
    or the machine restarted; a PID since reused by another process counts as gone:
    `owner_alive`): they would otherwise stay RUNNING forever. Returns how many."""
    import socket

    import mlflow

    host = socket.gethostname()
    runs = mlflow.search_runs([experiment_id], output_format="list",
                              filter_string=f"attributes.status = 'RUNNING' and tags.host = '{host}'")
    reaped = 0
    for run in runs:
        if not owner_alive(run.data.tags, run.info.run_id, configured):
            mlflow.MlflowClient().set_terminated(run.info.run_id, status="KILLED")
            reaped += 1
    return reaped
