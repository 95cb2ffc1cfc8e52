"""PostgreSQL goes down under load: every answer is a quick JSON 503, and service comes back alone.

The server runs as production runs it (``python -m veto_cloud.serve``) on the test's own cluster
(tests/faults/_services.py), which is stopped with ``pg_ctl stop -m immediate`` mid-load.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.faults._services import OwnPostgres
from tests.faults._stack import FaultStack

pytestmark = pytest.mark.faults

# What "quickly" means for every answer during an outage (the brief: within a second).
OUTAGE_ANSWER_BOUND_SECONDS = 1.0
PASSWORD = "fault-tests-password"  # _stack.FaultStack.seed's VETO_DEMO_PASSWORD


@dataclass(frozen=True)
class Reply:
    name: str
    client: int
    sent_at: float
    elapsed: float
    status: int | None
    body: Any
    retry_after: str | None
    error: str = ""

    def describe(self) -> str:
        return f"{self.name} status={self.status} {self.elapsed:.2f}s retry-after={self.retry_after} {self.body!r} {self.error}"


@dataclass
class MixedLoad:
    """Closed-loop clients, each on its own thread and keep-alive connection, each on one endpoint."""

    url: str
    # name -> (method, path, httpx kwargs, or a function of the client's number returning them)
    requests: dict[str, tuple[str, str, Any]]
    cookies: dict[str, str] = field(default_factory=dict)
    clients: dict[str, int] = field(default_factory=dict)  # name -> how many (default 2)
    replies: list[Reply] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> MixedLoad:
        for name in self.requests:
            for index in range(self.clients.get(name, 2)):
                args = (name, len(self._threads), index)
                thread = threading.Thread(target=self._client, args=args, daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _client(self, name: str, number: int, index: int) -> None:
        method, path, kwargs = self.requests[name]
        if callable(kwargs):
            kwargs = kwargs(index)  # per client of this endpoint (its own API key, say)
        with httpx.Client(base_url=self.url, timeout=5.0, cookies=self.cookies) as client:
            while not self._stop.is_set():
                sent_at = time.monotonic()
                try:
                    response = client.request(method, path, **kwargs)
                    try:
                        body: Any = response.json()
                    except ValueError:
                        body = response.text[:200]
                    reply = Reply(
                        name,
                        number,
                        sent_at,
                        time.monotonic() - sent_at,
                        response.status_code,
                        body,
                        response.headers.get("retry-after"),
                    )
                except httpx.HTTPError as exc:
                    reply = Reply(
                        name, number, sent_at, time.monotonic() - sent_at, None, None, None, repr(exc)
                    )
                self.replies.append(reply)
                time.sleep(0.02)

    def since(self, moment: float, until: float = float("inf")) -> list[Reply]:
        return [r for r in list(self.replies) if moment <= r.sent_at < until]

    def wait_for_every_client(self, *, after: float, timeout: float) -> None:
        """Block until every client has an answer to a request sent after ``after``: all that any
        of them sent before has been answered (or has failed) by then."""
        deadline = time.monotonic() + timeout
        while {r.client for r in self.since(after)} != set(range(len(self._threads))):
            assert time.monotonic() < deadline, f"a client still waits for an answer {timeout} s later"
            time.sleep(0.1)


def _more_api_keys(stack: FaultStack, count: int) -> list[str]:
    code = (
        "from tenancy.models import Team; from tenancy.services import api_key_create\n"
        f"for n in range({count}): print(api_key_create(team=Team.objects.get(slug='{stack.team}'),"
        " name=f'load {n}', scopes=['runtime'])[1])"
    )
    result = stack.manage("shell", "-c", code)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.split() if line.startswith("vk_")]


def _signed_in_cookies(url: str, username: str) -> dict[str, str]:
    with httpx.Client(base_url=url, timeout=10) as client:
        page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, page.text[:500]
        response = client.post(
            "/accounts/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
        )
        assert response.status_code == 302, response.text[:500]
        return dict(client.cookies)


def _quick_json_503(reply: Reply, *, up_at: float) -> bool:
    if reply.elapsed > OUTAGE_ANSWER_BOUND_SECONDS:
        return False
    if reply.status == 200 and reply.sent_at >= up_at - OUTAGE_ANSWER_BOUND_SECONDS:
        return True  # sent just before the restart, it waited for a connection and got one
    if reply.status != 503 or reply.retry_after is None:
        return False
    if not isinstance(reply.body, dict):
        return False
    if reply.name == "readyz":
        return bool(reply.body.get("status") == "unavailable")
    return bool(reply.body.get("error", {}).get("code") == "database_unavailable")


def _wait_until_all_ok(load: MixedLoad, *, after: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recent = load.since(after)
        if all(any(r.status == 200 for r in recent if r.name == name) for name in load.requests):
            return
        time.sleep(0.1)
    latest = {r.name: r for r in load.since(after)}
    raise AssertionError(
        f"no recovery within {timeout} s:\n" + "\n".join(r.describe() for r in latest.values())
    )


def test_postgres_down__under_mixed_load__every_answer_a_quick_json_503_then_service_recovers(
    stack: FaultStack, postgres: OwnPostgres
) -> None:
    # Given the live server on its own PostgreSQL, with clients on the gateway's validate, two DRF
    # endpoints, a signed-in dashboard page and /readyz
    stack.seed()
    # (API keys cached for 0.2 s only: the outage reaches the key lookup at once, not 10 s later.)
    web = stack.start_web(VETO_API_KEY_CACHE_SECONDS="0.2")
    headers = {"X-Veto-API-Key": stack.api_key}
    validate = {"tool_name": "run_data_export", "arguments": {"bucket": "internal-reports"}}
    # Validate clients each with a key of their own (key lookups are shared per key), more of them
    # than the gateway has database threads (min(32, cores + 4)).
    keys = _more_api_keys(stack, 12)
    requests: dict[str, tuple[str, str, Any]] = {
        "validate": (
            "POST",
            "/v1/tools/validate",
            lambda n: {"json": validate, "headers": {"X-Veto-API-Key": keys[n]}},
        ),
        "drf_tools": ("GET", "/v1/tools", {"headers": headers}),
        "drf_policies": ("GET", "/v1/policies", {"headers": headers}),
        "dashboard": ("GET", "/dashboard/", {}),
        "readyz": ("GET", "/readyz", {}),
    }
    clients = {"validate": len(keys)}
    cookies = _signed_in_cookies(web.url, "alice")
    with MixedLoad(web.url, requests, cookies=cookies, clients=clients) as load:
        started = time.monotonic()
        _wait_until_all_ok(load, after=started, timeout=20)
        assert web.process is not None
        server_pid = web.process.pid

        # When PostgreSQL dies (every backend at once) and stays down for a few seconds
        postgres.stop("immediate")
        down_at = time.monotonic()
        time.sleep(5)
        up_at = time.monotonic()
        postgres.start()

        # Then once PostgreSQL is back, every endpoint answers 200 again, with no server restart
        _wait_until_all_ok(load, after=up_at, timeout=20)
        load.wait_for_every_client(after=up_at, timeout=20)
        assert web.process.pid == server_pid and web.process.poll() is None

    # And every request sent during the outage answered a JSON 503 database_unavailable with
    # Retry-After, each within the bound: nothing hung, nothing was a 500
    during = load.since(down_at, up_at)
    bad = [r for r in during if not _quick_json_503(r, up_at=up_at)]
    assert not bad, f"{len(bad)} of {len(during)} outage answers were wrong, e.g.:\n" + "\n".join(
        r.describe() for r in bad[:10]
    )
    per_endpoint = {name: sum(r.name == name for r in during) for name in requests}
    assert min(per_endpoint.values()) >= 5, f"too little load to judge: {per_endpoint}"
    readyz = next(r for r in during if r.name == "readyz")
    assert readyz.body["checks"]["database"].startswith("error"), readyz.body
