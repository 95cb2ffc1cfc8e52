"""The application's processes for a fault test, on the test's own PostgreSQL and Redis.

``FaultStack`` is one installation: the seeded demo team and its key, a web server started the
way production starts it (``python -m veto_cloud.serve``) on a fixed port, so a killed server
comes back where its clients look, and Celery worker + beat when a test needs them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from conftest import BASE_DIR, free_port, start_celery_worker_and_beat, stop_processes
from tests.faults._seed import TEAM
from tests.faults._services import _children_of


def _environment(database_url: str, redis_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="veto_cloud.settings.base",
        DEBUG="false",
        SECRET_KEY="fault-test-secret",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        VETO_VAR_DIR=str(var_dir),
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


@dataclass
class Web:
    env: dict[str, str]
    log_path: Path
    workers: int
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 45) -> None:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "veto_cloud.serve"],
                cwd=BASE_DIR,
                env={**self.env, "PORT": str(self.port), "WEB_CONCURRENCY": str(self.workers)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a kill takes the workers too
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the web server did not start:\n{self.log_path.read_text(errors='replace')}")

    def kill(self) -> None:
        """SIGKILL to the server and its workers at once, as an OOM kill or a lost machine would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class FaultStack:
    database_url: str
    redis_url: str
    directory: Path
    api_key: str = field(default_factory=lambda: f"vk_faults_{secrets.token_urlsafe(32)}")
    # alice's own key: she approves in the rules' ``compliance`` group (see _seed.py)
    approver_key: str = field(default_factory=lambda: f"vk_faults_{secrets.token_urlsafe(32)}")
    team: str = TEAM
    web: Web | None = None
    celery: list[subprocess.Popen[bytes]] = field(default_factory=list)
    celery_env: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return _environment(self.database_url, self.redis_url, self.directory / "var", **extra)

    def seed(self, *, approval_timeout: int = 3600) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "tests.faults._seed"],
            cwd=BASE_DIR,
            env=self.env(
                VETO_DEMO_API_KEY=self.api_key,
                VETO_DEMO_APPROVER_API_KEY=self.approver_key,
                VETO_DEMO_PASSWORD="fault-tests-password",
                VETO_FAULT_APPROVAL_TIMEOUT=str(approval_timeout),
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def start_web(self, *, workers: int = 1, **extra: str) -> Web:
        self.web = Web(env=self.env(**extra), log_path=self.directory / "web.log", workers=workers)
        self.web.start()
        return self.web

    def start_celery(self, **extra: str) -> None:
        """A worker and beat as `make run` starts them (conftest.start_celery_worker_and_beat)."""
        self.celery_env = self.env(**extra)
        self.celery_dir.mkdir(exist_ok=True)
        self.celery = start_celery_worker_and_beat(self.celery_dir, self.celery_env)

    @property
    def celery_dir(self) -> Path:
        return self.directory / "celery"

    @property
    def worker(self) -> subprocess.Popen[bytes]:
        return self.celery[0]  # start_celery_worker_and_beat starts the worker first, then beat

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool process together, as the OOM killer would take a
        container; beat keeps sending its sweeps to the broker."""
        pool = _children_of(self.worker.pid)
        self.worker.kill()
        for pid in pool:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.worker.wait(timeout=10)

    def restart_worker(self) -> None:
        """The same worker command again (the one conftest starts); beat is left running."""
        with (self.celery_dir / "worker.log").open("a") as log:
            self.celery[0] = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "veto_cloud", "worker", "--concurrency", "1"]
                + ["--without-gossip", "--without-mingle", "--loglevel", "INFO"],
                cwd=BASE_DIR,
                env=self.celery_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def manage(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def verify_audit(self) -> list[str]:
        """``manage.py verify_audit`` on both of the team's chains; asserts both print OK."""
        outputs = []
        for stream in ("decisions", "events"):
            result = self.manage("verify_audit", "--team", self.team, "--stream", stream)
            assert result.returncode == 0 and result.stdout.startswith("OK"), (
                f"verify_audit --stream {stream}: {result.stdout}{result.stderr}"
            )
            outputs.append(result.stdout.strip())
        return outputs

    def logs(self) -> str:
        parts = []
        for path in sorted(self.directory.rglob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        if self.web is not None:
            self.web.stop()
        if self.celery:
            stop_processes(*self.celery)


@contextmanager
def fault_stack(database_url: str, redis_url: str, directory: Path) -> Iterator[FaultStack]:
    """A seeded installation whose processes are all stopped on the way out, pass or fail."""
    directory.mkdir(parents=True, exist_ok=True)
    stack = FaultStack(database_url=database_url, redis_url=redis_url, directory=directory)
    try:
        yield stack
    finally:
        stack.close()
