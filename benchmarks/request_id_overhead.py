"""What the request id adds to a gateway request (runtime/gateway.py, common/request_id.py): the
``X-Request-ID`` lookup among the headers, the id kept or made, the context variable set and
reset, and the response start that carries the echoed header.

    .venv/bin/python benchmarks/request_id_overhead.py [--requests 20000] [--runs 5]

Drives ``Gateway.__call__`` in process (ASGI scope, receive, send; an endpoint that answers at
once, SDK-like headers) with the request id as shipped, and again with its four steps replaced by
no-ops, interleaved run by run; prints best and median microseconds per request of each and the
difference. Then each step on its own. No log line is written: what a line costs is the
formatter's, paid only when something logs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veto_cloud.settings.test")

import django  # noqa: E402

django.setup()

from common import request_id  # noqa: E402
from runtime import gateway  # noqa: E402
from runtime.gateway import Gateway, GatewayRequest, GatewayResponse, Route, json_response  # noqa: E402

# What the SDK sends with a validate call (httpx's defaults, the key, a JSON body).
HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
    (b"user-agent", b"veto-python/0.15.2 python-httpx/0.28.1"),
    (b"x-veto-api-key", b"vk_live_0123456789abcdef0123456789abcdef"),
    (b"content-type", b"application/json"),
    (b"content-length", b"2"),
]


async def _answer(request: GatewayRequest) -> GatewayResponse:
    return json_response({"ok": True})


@contextlib.contextmanager
def without_request_id() -> Iterator[None]:
    saved = (
        gateway.request_id_for,
        gateway._echoing_request_id,
        gateway.set_request_id,
        gateway.reset_request_id,
    )
    gateway.request_id_for = lambda incoming: "x"  # type: ignore[assignment]
    gateway._echoing_request_id = lambda send, rid: send  # type: ignore[assignment]
    gateway.set_request_id = lambda rid: None  # type: ignore[assignment]
    gateway.reset_request_id = lambda token: None  # type: ignore[assignment]
    saved_header = gateway._header
    gateway._header = lambda headers, name: None  # type: ignore[assignment]
    try:
        yield
    finally:
        (
            gateway.request_id_for,
            gateway._echoing_request_id,
            gateway.set_request_id,
            gateway.reset_request_id,
        ) = saved
        gateway._header = saved_header


def gateway_us(requests: int, headers: list[tuple[bytes, bytes]]) -> float:
    app = Gateway(lambda *a: None, [Route("POST", "/v1/probe", _answer, authenticated=False)])  # type: ignore[arg-type, return-value]
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/probe", "headers": headers}
    message = {"type": "http.request", "body": b"{}", "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(message: Any) -> None:
        pass

    async def run() -> float:
        started = time.perf_counter()
        for _ in range(requests):
            await app(scope, receive, send)
        return (time.perf_counter() - started) / requests * 1e6

    return asyncio.run(run())


def step_us(body: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        body()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    named = [*HEADERS, (b"x-request-id", b"0f8fad5b-d9cb-469f-a165-70867728950e")]
    for label, headers in (("no X-Request-ID (one made)", HEADERS), ("valid X-Request-ID (kept)", named)):
        shipped, off = [], []
        for _ in range(args.runs):
            shipped.append(gateway_us(args.requests, headers))
            with without_request_id():
                off.append(gateway_us(args.requests, headers))
        print(
            f"gateway request, {label}: with {min(shipped):.2f} us (median {statistics.median(shipped):.2f}),"
            f" without {min(off):.2f} us (median {statistics.median(off):.2f});"
            f" added {min(shipped) - min(off):.2f} us best, {statistics.median(shipped) - statistics.median(off):.2f} us median"
        )
    calls = args.requests * 4
    valid = b"0f8fad5b-d9cb-469f-a165-70867728950e"

    def set_and_reset() -> None:
        request_id.reset_request_id(request_id.set_request_id("x"))

    async def raw_send(message: Any) -> None:
        pass

    echoing = gateway._echoing_request_id(raw_send, valid)
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json")],
    }
    body_message = {"type": "http.response.body", "body": b"{}"}

    def drive(coroutine: Any) -> None:
        # The sends never suspend: one step runs each to its end.
        with contextlib.suppress(StopIteration):
            coroutine.send(None)

    def echoed_sends() -> None:
        drive(echoing(start))
        drive(echoing(body_message))

    def plain_sends() -> None:
        drive(raw_send(start))
        drive(raw_send(body_message))

    steps = {
        "the response's two sends through the echoing wrapper": echoed_sends,
        "(baseline) the same two sends, unwrapped": plain_sends,
        "header lookup (9 headers)": lambda: gateway._header(named, request_id.HEADER),
        "request_id_for(valid)": lambda: request_id.request_id_for(valid),
        "request_id_for(None): a new uuid4 hex": lambda: request_id.request_id_for(None),
        "context variable set + reset": set_and_reset,
        "(for comparison) uuid.uuid4().hex": lambda: uuid.uuid4().hex,
    }
    for name, body in steps.items():
        runs = [step_us(body, calls) for _ in range(args.runs)]
        print(f"  {name}: {min(runs):.3f} us (median {statistics.median(runs):.3f})")


if __name__ == "__main__":
    main()
