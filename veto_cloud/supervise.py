"""`make run`'s process supervisor: the Procfile's processes (web, worker, beat) in one terminal.

A process that dies is started again after a back-off (1 s, doubling to 30 s while it keeps dying
within 30 s of starting), and the log says so: ``worker exited with code -9 (SIGKILL); restarting
in 1s``. The others keep running: a dead beat must not take the dashboard down with it (honcho,
used before, stopped everything when one process ended). Ctrl-C (SIGTERM, SIGHUP) stops them all:
SIGTERM to each, then SIGKILL to what is left after ``--stop-timeout`` seconds.

Each process runs in a session of its own, so Ctrl-C reaches the supervisor only and shutdown
happens in order; its whole process group is killed when it ends (a killed Celery worker's pool
children go with it). Output lines are prefixed with the process's name.

    python -m veto_cloud.supervise [--procfile Procfile]
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass
class Program:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    # Consecutive quick deaths: the back-off doubles with each, and resets once a run lasts.
    failures: int = 0
    restart_at: float | None = None
    pumps: list[threading.Thread] = field(default_factory=list)


def read_procfile(path: Path) -> list[Program]:
    programs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise SystemExit(f"{path}:{number}: expected 'name: command', got {line!r}")
        programs.append(Program(name.strip(), shlex.split(command)))
    if not programs:
        raise SystemExit(f"{path}: no processes")
    return programs


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            return str(code)
    return str(code)


class Supervisor:
    def __init__(
        self,
        programs: Sequence[Program],
        *,
        initial_backoff: float = 1.0,
        max_backoff: float = 30.0,
        stable_after: float = 30.0,
        stop_timeout: float = 10.0,
        out: IO[str] = sys.stdout,
    ) -> None:
        self.programs = list(programs)
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.out = out
        self.width = max(len(program.name) for program in self.programs)
        self._write_lock = threading.Lock()
        self._stop_requests = 0

    def say(self, name: str, text: str) -> None:
        with self._write_lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {name:<{self.width}} | {text}\n")
            self.out.flush()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode("utf-8", errors="replace").rstrip("\n"))
        stream.close()

    def start(self, program: Program) -> None:
        program.process = subprocess.Popen(
            program.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        program.started_at = time.monotonic()
        program.restart_at = None
        assert program.process.stdout is not None
        pump = threading.Thread(target=self._pump, args=(program.name, program.process.stdout), daemon=True)
        pump.start()
        program.pumps = [pump]
        self.say(
            "supervise", f"started {program.name} (pid {program.process.pid}): {shlex.join(program.argv)}"
        )

    @staticmethod
    def _kill_group(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self, program: Program, now: float) -> None:
        process = program.process
        assert process is not None
        code = process.returncode
        # Whatever it left behind (a Celery worker's pool children) goes with it.
        self._kill_group(process.pid, signal.SIGKILL)
        for pump in program.pumps:
            pump.join(timeout=1)
        program.process = None
        if now - program.started_at >= self.stable_after:
            program.failures = 0
        delay = min(self.initial_backoff * 2**program.failures, self.max_backoff)
        program.failures += 1
        program.restart_at = now + delay
        self.say(
            "supervise", f"{program.name} exited with code {describe_exit(code)}; restarting in {delay:g}s"
        )

    def _request_stop(self, signum: int, frame: object) -> None:
        self._stop_requests += 1

    def run(self) -> int:
        # SIGHUP too: the children have sessions of their own, so a closed terminal would not end them.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._request_stop)
        for program in self.programs:
            self.start(program)
        while not self._stop_requests:
            now = time.monotonic()
            for program in self.programs:
                if program.process is not None and program.process.poll() is not None:
                    self._reap(program, now)
                elif program.process is None and program.restart_at is not None and now >= program.restart_at:
                    self.start(program)
            time.sleep(0.1)
        self.stop()
        return 0

    def stop(self) -> None:
        running = [program for program in self.programs if program.process is not None]
        self.say("supervise", f"stopping {', '.join(program.name for program in running) or 'nothing'}")
        for program in running:
            assert program.process is not None
            self._kill_group(program.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        # A second Ctrl-C means now.
        while time.monotonic() < deadline and self._stop_requests < 2:
            if all(program.process.poll() is not None for program in running if program.process):
                break
            time.sleep(0.1)
        for program in running:
            assert program.process is not None
            if program.process.poll() is None:
                self.say("supervise", f"{program.name} did not stop in time; killing it")
            self._kill_group(program.process.pid, signal.SIGKILL)
            program.process.wait()
            for pump in program.pumps:
                pump.join(timeout=1)
            self.say(
                "supervise", f"{program.name} stopped (code {describe_exit(program.process.returncode)})"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--procfile", type=Path, default=Path("Procfile"))
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    parser.add_argument("--initial-backoff", type=float, default=1.0)
    parser.add_argument("--max-backoff", type=float, default=30.0)
    args = parser.parse_args(argv)
    supervisor = Supervisor(
        read_procfile(args.procfile),
        stop_timeout=args.stop_timeout,
        initial_backoff=args.initial_backoff,
        max_backoff=args.max_backoff,
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
