"""The checkpoint signing-key file when several processes start at once (web, worker and beat
under ``make run``): one key wins, and nobody reads a half-written file. No database needed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from audit.signing import load_or_create_signing_key, public_key_hex


class _PausingFile:
    """A file whose first write stops half-way (flushed, so the bytes are on disk) until released."""

    def __init__(self, file: Any, half_written: threading.Event, release: threading.Event) -> None:
        self._file = file
        self._half_written = half_written
        self._release = release

    def write(self, data: bytes) -> int:
        middle = len(data) // 2
        self._file.write(data[:middle])
        self._file.flush()
        self._half_written.set()
        assert self._release.wait(10), "the test never released the paused writer"
        return int(self._file.write(data[middle:])) + middle

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _PausingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def test_signing_key_file__second_process_starts_while_first_writes__reads_no_partial_key(
    tmp_path, monkeypatch
):
    # Given a first process creating the key file, stopped after writing half of its key
    path = tmp_path / "keys" / "checkpoint.key"
    half_written, release = threading.Event(), threading.Event()
    real_fdopen = os.fdopen
    calls: list[int] = []

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        calls.append(fd)
        file = real_fdopen(fd, *args, **kwargs)
        return _PausingFile(file, half_written, release) if len(calls) == 1 else file

    monkeypatch.setattr(os, "fdopen", fdopen)
    results: dict[str, Any] = {}

    def first() -> None:
        try:
            results["first"] = public_key_hex(load_or_create_signing_key(path))
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            results["first"] = exc

    writer = threading.Thread(target=first)
    writer.start()
    assert half_written.wait(10)
    # When a second process loads the key meanwhile, and then the first one finishes
    try:
        second = public_key_hex(load_or_create_signing_key(path))
    finally:
        release.set()
        writer.join(10)
    # Then the second got a whole key, the first ended with that same key, and the file holds it
    assert results["first"] == second
    assert public_key_hex(load_or_create_signing_key(path)) == second
    assert len(path.read_bytes()) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.key"]


def test_signing_key_file__many_threads_create_it_at_once__all_hold_the_same_key(tmp_path):
    # Given 12 threads released together at a key file that does not exist yet
    path = tmp_path / "checkpoint.key"
    barrier = threading.Barrier(12)
    keys: list[str] = []

    def start() -> None:
        barrier.wait(10)
        keys.append(public_key_hex(load_or_create_signing_key(path)))

    threads = [threading.Thread(target=start) for _ in range(12)]
    # When each loads or creates the key
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # Then all twelve hold the one key in the file, and no temporary file is left beside it
    assert len(keys) == 12
    assert set(keys) == {public_key_hex(load_or_create_signing_key(path))}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.key"]


_CREATE = """
import sys, time
from pathlib import Path
from audit.signing import load_or_create_signing_key, public_key_hex
start = float(sys.argv[2])
while time.time() < start:
    pass
print(public_key_hex(load_or_create_signing_key(Path(sys.argv[1]))))
"""


def test_signing_key_file__processes_start_together__all_hold_the_same_key(tmp_path):
    # Given 4 processes set to load the same missing key file at the same instant
    import time

    path = tmp_path / "var" / "checkpoint.key"
    start = time.time() + 1.5
    root = Path(__file__).resolve().parents[2]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CREATE, str(path), str(start)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    # When they run
    outputs = [process.communicate(timeout=30) for process in processes]
    # Then every one printed the key that is in the file
    assert [process.returncode for process in processes] == [0] * 4, outputs
    expected = public_key_hex(load_or_create_signing_key(path))
    assert [out.strip() for out, _ in outputs] == [expected] * 4
