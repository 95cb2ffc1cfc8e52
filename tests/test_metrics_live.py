"""``/metrics`` on the real server (uvicorn, production settings, behind the gateway and Django's
middleware), scraped as Prometheus does: a validate made over HTTP is counted by the server
process, and a dashboard's websocket is an event-stream client while it is open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import LiveServer, start_asgi_server, stop_processes
from tests.factories import TeamFactory, api_key_for
from tests.test_live_socket import connect, member, session_cookie, validate

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

TOKEN = "live-metrics-token-0123456789abcdef"


@pytest.fixture(scope="module")
def metrics_server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("live-metrics")
    process, server = start_asgi_server(
        directory / "server.log", VETO_METRICS_TOKEN=TOKEN, VETO_METRICS_DIR=str(directory / "metrics")
    )
    yield server
    stop_processes(process)


def scraped(server: LiveServer, token: str | None = TOKEN) -> dict[tuple[str, tuple], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{server.url}/metrics", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def websockets_open(samples: dict) -> float:
    return samples.get(("veto_event_stream_clients", (("kind", "dashboard_websocket"),)), 0.0)


def test_live_metrics__without_token__json_401_over_http(metrics_server):
    # When scraped without the token, then the API's JSON 401
    response = httpx.get(f"{metrics_server.url}/metrics", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_live_metrics__validate_over_http__counted_by_the_server(metrics_server):
    # Given a team and the server's scrape before
    team = TeamFactory()
    token = api_key_for(team)
    name = ("veto_decisions_total", (("decision", "allow"),))
    before = scraped(metrics_server).get(name, 0.0)
    # When the SDK's endpoint allows three calls
    for _ in range(3):
        validate(metrics_server, token, "ls")
    # Then the server's own counter has them
    assert scraped(metrics_server)[name] - before == 3.0


def test_live_metrics__dashboard_websocket__an_event_stream_client_while_open(metrics_server):
    # Given a member's session and the scrape before
    team = TeamFactory()
    cookie = session_cookie(metrics_server, member(team))
    before = websockets_open(scraped(metrics_server))

    async def scenario() -> tuple[float, float]:
        async with await connect(metrics_server, cookie, f"kinds=decisions&team={team.slug}&rows=1&after=0"):
            during = websockets_open(await asyncio.to_thread(scraped, metrics_server))
        # The server hears the close a moment later.
        deadline = time.monotonic() + 5
        while True:
            after = websockets_open(await asyncio.to_thread(scraped, metrics_server))
            if after == before or time.monotonic() > deadline:
                return during, after
            await asyncio.sleep(0.05)

    during, after = asyncio.run(scenario())
    # Then one more while the page's socket is open, and back once it closed
    assert (during - before, after - before) == (1.0, 0.0)
