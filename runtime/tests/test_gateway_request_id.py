"""Every HTTP answer echoes its request id (``X-Request-ID``) and every log line written while the
request is handled carries it, whether a gateway endpoint answers or Django behind it (its sync
code runs on a thread that inherits the id). Driven as uvicorn drives the gateway (ASGI)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler

from common.request_id import RequestIdFilter, current_request_id
from runtime.gateway import Gateway, GatewayRequest, GatewayResponse, Route, json_response

GENERATED = re.compile(r"[0-9a-f]{32}")
logger = logging.getLogger("veto.test.gateway_request_id")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def request_ids(self, message: str) -> list[str | None]:
        return [getattr(r, "request_id", None) for r in self.records if message in r.getMessage()]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


async def _logging_endpoint(request: GatewayRequest) -> GatewayResponse:
    logger.info("endpoint.handled")
    # Work a request hands to a thread (run_in_db_thread goes through sync_to_async) logs under its id too.
    await sync_to_async(logger.info, thread_sensitive=False)("endpoint.thread")
    return json_response({"request_id": current_request_id()})


def _gateway() -> Gateway:
    return Gateway(ASGIHandler(), [Route("GET", "/probe", _logging_endpoint, authenticated=False)])  # type: ignore[arg-type]


def _call(
    app: Gateway, path: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, list[tuple[bytes, bytes]]]:
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # the client stays until the answer is sent
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], start["headers"]


def _echoed(headers: list[tuple[bytes, bytes]]) -> str:
    (value,) = [v for name, v in headers if name.lower() == b"x-request-id"]
    return value.decode()


def test_gateway_endpoint__valid_incoming_id__echoed_and_on_its_log_lines(records):
    # Given a client that names its request
    # When a gateway endpoint answers it
    status, headers = _call(_gateway(), "/probe", [(b"x-request-id", b"sdk-call-0001")])
    # Then the answer echoes the id, once, and the endpoint's log lines, its thread's too, carry it
    assert status == 200
    assert _echoed(headers) == "sdk-call-0001"
    assert records.request_ids("endpoint.handled") == ["sdk-call-0001"]
    assert records.request_ids("endpoint.thread") == ["sdk-call-0001"]


@pytest.mark.parametrize("incoming", [b"x" * 129, b"evil\r\nSet-Cookie: a=b", b"has space", b""])
def test_gateway_endpoint__malformed_incoming_id__replaced_by_a_new_one(records, incoming):
    # Given a client whose X-Request-ID is too long or has unsafe characters
    # When the endpoint answers
    _, headers = _call(_gateway(), "/probe", [(b"x-request-id", incoming)])
    # Then a new id stands in for it, in the answer and on the log lines
    made = _echoed(headers)
    assert GENERATED.fullmatch(made)
    assert records.request_ids("endpoint.handled") == [made]


def test_gateway_endpoint__no_incoming_id__one_made_for_each_request(records):
    # Given two requests without an X-Request-ID
    app = _gateway()
    # When both are answered
    first, second = (_echoed(_call(app, "/probe", [])[1]) for _ in range(2))
    # Then each got its own new id, on its own log lines, and none is left once they are done
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second) and first != second
    assert records.request_ids("endpoint.handled") == [first, second]
    assert current_request_id() is None


def test_django_behind_the_gateway__incoming_id__echoed_and_on_djangos_log_line(records):
    # Given a request the gateway hands to Django (no gateway route: Django answers 404 and its
    # request logger says so, from its sync code)
    # When Django answers it
    status, headers = _call(_gateway(), "/v1/no-such-thing", [(b"x-request-id", b"dashboard-77")])
    # Then Django's answer echoes the id and its log line carries it
    assert status == 404
    assert _echoed(headers) == "dashboard-77"
    assert records.request_ids("Not Found: /v1/no-such-thing") == ["dashboard-77"]
