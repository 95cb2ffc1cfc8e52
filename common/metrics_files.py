"""The multiprocess directory's files: which process wrote each, and which to forget.

prometheus-client's multiprocess mode gives every process its own memory-mapped files in one
directory, named ``<type>_<pid>.db`` (gauges ``gauge_<mode>_<pid>.db``), and /metrics sums them.
A counter's file outlives its process on purpose: what a dead worker counted still counts, so the
sum never goes down while the server runs. A "live" gauge's file (connections held now, rows
queued now) must go with its process, or a dead worker's last value is summed for ever.

No Django here: ``veto_cloud.serve`` prunes the directory before the web workers start.
"""

from __future__ import annotations

import os
from pathlib import Path

LIVE_GAUGE_PREFIX = "gauge_live"


def file_pid(path: Path) -> int | None:
    """The pid in a multiprocess file's name (``counter_123.db``, ``gauge_livesum_123.db``)."""
    if path.suffix != ".db":
        return None
    try:
        return int(path.stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this machine (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def prune_dead_processes(directory: Path, *, counters_too: bool) -> list[Path]:
    """Remove the live-gauge files of processes that are gone, and with ``counters_too`` every
    file of theirs (what the server start does: a restart resets the counters, as any exporter's
    restart does). A running process's files are never touched, so a web server that starts
    while the Celery workers run keeps their counts. Returns what was removed."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for path in directory.glob("*.db"):
        pid = file_pid(path)
        if pid is None or process_alive(pid):
            continue
        if counters_too or path.name.startswith(LIVE_GAUGE_PREFIX):
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # another process pruned it first
            removed.append(path)
    return removed


def forget_own_live_gauges(directory: Path) -> None:
    """Before a process makes its metrics: a live-gauge file under its own pid is a dead
    process's whose pid it reuses, and its last values would become this one's starting values."""
    for path in directory.glob(f"{LIVE_GAUGE_PREFIX}*_{os.getpid()}.db"):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
