"""Fixtures shared by every test: no outbound network, and a live ASGI server on demand."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings

BASE_DIR = Path(__file__).resolve().parent
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: object) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # AF_UNIX paths and the like stay on this machine
    host = str(address[0])
    return host in ("localhost", "::1") or host.startswith("127.")


@pytest.fixture(autouse=True)
def _refuse_outbound_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to loopback services only; anything else is a test bug, and fails loudly."""

    def connect(self: socket.socket, address: object) -> None:
        if not _is_loopback(address):
            raise ConnectionRefusedError(f"tests may not open connections to {address!r}")
        return _real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if not _is_loopback(address):
            raise ConnectionRefusedError(f"tests may not open connections to {address!r}")
        return _real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def no_event_subscribers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process with nobody subscribed to any event (the apps' sinks unsubscribed for the
    test, and subscribed again after it): for what a publisher does when nobody listens."""
    from common import events

    monkeypatch.setattr(events, "_handlers", {})
    events._reindex()
    yield
    monkeypatch.undo()
    events._reindex()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With VETO_FORBID_SKIPS=1 (.ci/run's PostgreSQL + Redis run) a skipped test fails the run:
    a test that needs those services must have run where they are."""
    if os.environ.get("VETO_FORBID_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        print(f"\nVETO_FORBID_SKIPS: {len(skipped)} test(s) skipped where none may be:")
        for report in skipped:
            print(f"  {report.nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def database_url_for_subprocess() -> str:
    """The test database (created by pytest-django) as a DATABASE_URL a subprocess can use."""
    from django.db import connection

    config = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{config['NAME']}"
    user = quote(config.get("USER") or "")
    password = quote(config.get("PASSWORD") or "")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{credentials}{config.get('HOST') or '127.0.0.1'}:{config.get('PORT') or 5432}/{config['NAME']}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def subprocess_environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_subprocess(),
        DJANGO_SETTINGS_MODULE="veto_cloud.settings.base",
        DEBUG="false",
        SECRET_KEY="live-server-test-secret",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        # The pub/sub prefix of this test process, whatever REDIS_URL a test hands the child: a
        # test that points both at a Redis of its own (override_settings in here, the URL there)
        # must still share the event channel with its servers and workers.
        VETO_REDIS_PUBSUB_PREFIX=settings.REDIS_PUBSUB_PREFIX,
    )
    env.update(extra)
    return env


@dataclass(frozen=True)
class LiveServer:
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_asgi_server(log_path: Path, **environment: str) -> tuple[subprocess.Popen[bytes], LiveServer]:
    """Start uvicorn with production settings on the test database; return once /healthz answers.

    The same uvicorn options as ``python -m veto_cloud.serve`` (HTTP protocol, timeouts), one worker."""
    from veto_cloud.serve import uvicorn_options

    port = free_port()
    env = subprocess_environment(**environment)
    keep_alive = float(env.get("VETO_HTTP_KEEPALIVE_TIMEOUT_SECONDS") or 5)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                *uvicorn_options(host="127.0.0.1", port=port, workers=1, keep_alive=keep_alive),
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(url=f"http://127.0.0.1:{port}", log_path=log_path)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return process, server
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the live server did not start:\n{server.log()}")
        time.sleep(0.1)


def start_celery_worker_and_beat(directory: Path, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """A real Celery worker and beat, as `make run` starts them; logs in ``directory``."""
    celery = [sys.executable, "-m", "celery", "-A", "veto_cloud"]
    commands = {
        # The webhook dispatch queue first, as the Procfile's worker.
        "worker": [
            *celery,
            "worker",
            "-Q",
            "webhooks-dispatch,celery",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
        ],
        "beat": [*celery, "beat", "--schedule", str(directory / "beat-schedule")],
    }
    processes = []
    for name, command in commands.items():
        with (directory / f"{name}.log").open("w") as log:
            processes.append(
                subprocess.Popen(
                    [*command, "--loglevel", "INFO"],
                    cwd=BASE_DIR,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return processes


def stop_processes(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def asgi_server(
    django_db_setup: None, django_db_blocker: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The real ASGI server (uvicorn, production settings) on the test database, in a subprocess.

    Tests that use it need committed data: ask for ``transactional_db``.
    """
    process, server = start_asgi_server(tmp_path_factory.mktemp("live-server") / "server.log")
    yield server
    stop_processes(process)
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        _wait_for_other_sessions_to_close()


def _wait_for_other_sessions_to_close(timeout: float = 10.0) -> None:
    """PostgreSQL notices a dead client's sockets a moment later; dropping the test database
    before then fails with "being accessed by other users"."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)
        cursor.execute(
            "SELECT pid, application_name, state, query FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        print("sessions still open on the test database:", cursor.fetchall())
