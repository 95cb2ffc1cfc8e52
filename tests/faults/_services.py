"""A fault test's own services: a PostgreSQL cluster, a Redis server and the live ASGI server.

Each runs on a free loopback port, belongs to the test alone (the machine's shared PostgreSQL and
Redis are never touched), and can be stopped, frozen and started again while the test runs::

    with own_postgres() as pg, own_redis() as redis:
        seed(pg.url())                                  # e.g. python -m tests.faults._seed
        with live_server(tmp_path / "server.log", DATABASE_URL=pg.url(), REDIS_URL=redis.url()) as server:
            ...                                         # load against server.url
            pg.stop()                                   # pg_ctl stop -m immediate: an outage
            pg.start()                                  # the same cluster, port and data again

PostgreSQL's initdb and pg_ctl refuse to run as root: as root they run as ``nobody`` (runuser),
over a data directory under /tmp owned by it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conftest import LiveServer, free_port, start_asgi_server, stop_processes

PG_USER = "postgres"
PG_DATABASE = "veto"
UNPRIVILEGED_USER = "nobody"


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps them off PATH)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return candidates[-1].parent
    found = shutil.which("pg_ctl")
    if found is None:
        raise RuntimeError("PostgreSQL's pg_ctl is not installed (apt-get install postgresql)")
    return Path(found).parent


def _as_postgres_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", UNPRIVILEGED_USER, "--", *command] if os.geteuid() == 0 else command


def _wait_for_port(port: int, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


@dataclass
class OwnPostgres:
    """One PostgreSQL cluster of the test's own; ``url()`` is a DATABASE_URL for it."""

    port: int
    root: Path  # data/ and the socket directory live here; removed afterwards

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = PG_DATABASE) -> str:
        return f"postgres://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        command = [str(postgres_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args]
        subprocess.run(_as_postgres_owner(command), check=True, capture_output=True, timeout=timeout)

    def start(self) -> None:
        """Start (or restart) the cluster on its port; returns once it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            # A throwaway cluster: durability is not what these tests measure.
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg_ctl("-l", str(self.log_path), "-w", "-t", "30", "-o", options, "start")
        _wait_for_port(self.port, timeout=10, what="PostgreSQL")

    def stop(self, mode: str = "immediate") -> None:
        """``pg_ctl stop -m immediate`` by default: every backend dies at once, as in a crash."""
        self._pg_ctl("-m", mode, "-w", "stop")

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def _signal_all(self, signum: signal.Signals) -> None:
        """``signum`` to the postmaster first (stopped, it forks no new backend), then to its
        backends, listed again until none is new: listing /proc takes milliseconds, and a
        backend forked while the first list was read escaped a freeze and went on answering
        its pooled connection (seen in CI: 98 answers of 200 while "frozen")."""
        postmaster = self.postmaster_pid()
        os.kill(postmaster, signum)
        signalled: set[int] = set()
        while new := set(_children_of(postmaster)) - signalled:
            for pid in new:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass  # a backend that ended meanwhile
            signalled |= new

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend: connections stay open but nothing answers."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A fresh, started cluster with an empty ``veto`` database; stopped and removed afterwards."""
    import psycopg

    root = Path(tempfile.mkdtemp(prefix="veto-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user=UNPRIVILEGED_USER)
    cluster = OwnPostgres(port=free_port(), root=root)
    try:
        initdb = [str(postgres_bin_dir() / "initdb"), "-D", str(cluster.data_dir), "-U", PG_USER]
        subprocess.run(
            _as_postgres_owner([*initdb, "--auth=trust", "-E", "UTF8", "--no-sync"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        cluster.start()
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")
        yield cluster
    finally:
        try:
            if (cluster.data_dir / "postmaster.pid").exists():
                cluster.thaw()  # a frozen cluster would not hear the stop
                cluster.stop("immediate")
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class OwnRedis:
    """One Redis server of the test's own (no persistence); ``url(db)`` is a REDIS_URL for it."""

    port: int
    root: Path
    process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        """Start (or restart) the server on its port; returns once it answers PING."""
        import redis

        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.root), "--logfile", str(self.root / "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return
            except redis.RedisError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{self.log()}")
            time.sleep(0.05)

    def stop(self, *, crash: bool = True) -> None:
        """SIGKILL by default (a crash); ``crash=False`` asks it to shut down."""
        if self.process is None:
            return
        self.thaw()
        if crash:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing answers."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        path = self.root / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def own_redis() -> Iterator[OwnRedis]:
    """A started, empty Redis server; killed and removed afterwards."""
    server = OwnRedis(port=free_port(), root=Path(tempfile.mkdtemp(prefix="veto-redis-")))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@contextmanager
def live_server(log_path: Path, **environment: str) -> Iterator[LiveServer]:
    """The production ASGI server (conftest.start_asgi_server: what ``python -m veto_cloud.serve``
    runs) with ``environment`` over the test settings; e.g. DATABASE_URL=pg.url(). Stopped afterwards."""
    process, server = start_asgi_server(log_path, **environment)
    try:
        yield server
    finally:
        stop_processes(process)
