"""Which multiprocess metrics files are forgotten: a dead process's live gauges always, its
counters only at a server's start, a running process's never."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from common.metrics_files import file_pid, forget_own_live_gauges, prune_dead_processes


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def files(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_bytes(b"")


def test_file_pid__names_of_each_kind__the_pid_or_none():
    assert file_pid(Path("counter_123.db")) == 123
    assert file_pid(Path("gauge_livesum_45.db")) == 45
    assert file_pid(Path("histogram_7.db")) == 7
    assert file_pid(Path("notes.txt")) is None
    assert file_pid(Path("counter_x.db")) is None


def test_prune__dead_process__live_gauges_go_counters_stay(tmp_path):
    # Given files of a process that has exited and of this running one
    dead, alive = dead_pid(), os.getpid()
    files(tmp_path, f"counter_{dead}.db", f"histogram_{dead}.db", f"gauge_livesum_{dead}.db")
    files(tmp_path, f"counter_{alive}.db", f"gauge_livesum_{alive}.db")
    # When pruned at a scrape
    removed = prune_dead_processes(tmp_path, counters_too=False)
    # Then only the dead one's live gauge went: what it counted still counts
    assert [p.name for p in removed] == [f"gauge_livesum_{dead}.db"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{dead}.db", f"histogram_{dead}.db", f"counter_{alive}.db", f"gauge_livesum_{alive}.db"]
    )


def test_prune__server_start__every_file_of_the_dead_goes_the_running_keep_theirs(tmp_path):
    # Given files of an exited process and of this running one (a Celery worker, say)
    dead, alive = dead_pid(), os.getpid()
    files(tmp_path, f"counter_{dead}.db", f"gauge_livesum_{dead}.db", f"counter_{alive}.db")
    # When the web server starts
    prune_dead_processes(tmp_path, counters_too=True)
    # Then the dead process's counts are reset and the running one's kept
    assert [p.name for p in tmp_path.iterdir()] == [f"counter_{alive}.db"]


def test_forget_own_live_gauges__a_reused_pid__its_predecessors_live_gauges_go(tmp_path):
    # Given a live-gauge file under this process's pid, left by a dead process it reuses the pid of
    me = os.getpid()
    files(tmp_path, f"gauge_livesum_{me}.db", f"counter_{me}.db", "gauge_livesum_1.db")
    # When this process makes its metrics
    forget_own_live_gauges(tmp_path)
    # Then that gauge file is gone (its values would have been this process's start), the rest stay
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"counter_{me}.db", "gauge_livesum_1.db"])
