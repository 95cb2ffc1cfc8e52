"""A revoked key stops working within API_KEY_CACHE_SECONDS on every path of every worker process
(the live ASGI server, two uvicorn workers, keys hot in both caches when the key is revoked)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from conftest import BASE_DIR, free_port, stop_processes, subprocess_environment
from tenancy.models import ApiKey
from tenancy.services import api_key_revoke
from tests.factories import TeamFactory, api_key_for

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

CACHE_SECONDS = 2.0


@pytest.fixture
def two_workers(tmp_path):
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "veto_cloud.asgi:application", "--host", "127.0.0.1"]
            + ["--port", str(port), "--workers", "2", "--no-access-log", "--lifespan", "off"],
            cwd=BASE_DIR,
            env=subprocess_environment(VETO_API_KEY_CACHE_SECONDS=str(CACHE_SECONDS)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the live server did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    yield url
    stop_processes(process)


def call(url: str, key: str, n: int) -> int:
    # A new connection each time, so both workers are asked; gateway and Django API in turn.
    headers = {"X-Veto-API-Key": key}
    if n % 2:
        return httpx.get(f"{url}/v1/decisions?limit=1", headers=headers, timeout=10).status_code
    body = {"tool_name": "send_sms", "arguments": {}}
    return httpx.post(f"{url}/v1/tools/validate", json=body, headers=headers, timeout=10).status_code


def test_revoked_key__refused_by_every_worker_within_the_cache_seconds(two_workers):
    # Given a key in use on both paths of both workers for longer than the cache's TTL
    team = TeamFactory()
    key = api_key_for(team, scopes=(ApiKey.Scope.RUNTIME, ApiKey.Scope.DECISIONS_READ))
    n = 0
    warm_until = time.monotonic() + CACHE_SECONDS * 1.5
    while time.monotonic() < warm_until:
        assert call(two_workers, key, n) == 200
        n += 1
    # When it is revoked (in this process: the servers' caches are not told)
    api_key_revoke(api_key=ApiKey.objects.get(team=team))
    revoked_at = time.monotonic()
    # And it keeps being presented for a while
    last_accepted = None
    answers = []
    while time.monotonic() < revoked_at + CACHE_SECONDS + 1.5:
        status = call(two_workers, key, n)
        n += 1
        answers.append(status)
        if status == 200:
            last_accepted = time.monotonic() - revoked_at
    # Then no worker accepted it once API_KEY_CACHE_SECONDS had passed, and it ends refused
    assert last_accepted is None or last_accepted < CACHE_SECONDS, f"accepted {last_accepted:.2f} s after"
    assert set(answers[-10:]) == {401}
