"""The gateway's streaming answer, driven as uvicorn drives it (ASGI receive/send): the security
headers every answer gets, and an end when the client goes away or the process is asked to stop,
with the body closed either way."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator
from typing import Any

from runtime import gateway
from runtime.gateway import Gateway, GatewayRequest, Route, StreamingResponse


class Endless:
    """A body that never ends by itself; says whether it was closed."""

    def __init__(self) -> None:
        self.closed = False
        self.on_close_calls = 0

    async def body(self) -> AsyncGenerator[bytes, None]:
        try:
            for n in itertools.count():
                yield f"chunk {n}\n".encode()
                await asyncio.sleep(0.01)
        finally:
            self.closed = True

    def endpoint(self) -> Any:
        async def stream(request: GatewayRequest) -> StreamingResponse:
            return StreamingResponse(
                self.body(),
                headers=[(b"cache-control", b"no-cache")],
                content_type=b"text/event-stream",
                on_close=self.count_close,
            )

        return stream

    def count_close(self) -> None:
        self.on_close_calls += 1


async def _serve(endless: Endless, *, end: Any) -> list[dict[str, Any]]:
    """Serve one GET on the stream; ``end(sent)`` awaits what ends it."""
    app = Gateway(lambda *a: None, [Route("GET", "/stream", endless.endpoint(), authenticated=False)])  # type: ignore[arg-type, return-value]
    sent: list[dict[str, Any]] = []
    disconnect = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/stream", "headers": [], "query_string": b""}
    serving = asyncio.create_task(app(scope, receive, send))
    await end(sent, disconnect)
    await asyncio.wait_for(serving, timeout=2)
    return sent


async def _after_chunks(sent: list[dict[str, Any]]) -> None:
    while sum(1 for m in sent if m.get("body")) < 3:
        await asyncio.sleep(0.01)


def test_stream__client_disconnects__ends_and_its_body_is_closed():
    endless = Endless()

    async def client_goes_away(sent, disconnect) -> None:
        await _after_chunks(sent)
        disconnect.set()

    # When the client goes away after a few chunks
    sent = asyncio.run(_serve(endless, end=client_goes_away))
    # Then the answer had the stream's headers and the gateway's security headers, sent chunks as
    # they came, and ended with the body closed (no end of body sent to nobody)
    start = sent[0]
    headers = dict(start["headers"])
    assert start["status"] == 200
    assert headers[b"content-type"] == b"text/event-stream"
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert b"content-length" not in headers
    assert sent[1] == {"type": "http.response.body", "body": b"chunk 0\n", "more_body": True}
    assert sent[-1]["more_body"] is True
    assert endless.closed and endless.on_close_calls == 1


def test_stream__process_asked_to_stop__ends_the_response_so_the_server_can_exit():
    endless = Endless()

    async def server_stops(sent, disconnect) -> None:
        await _after_chunks(sent)
        gateway.server_stopping().set()

    try:
        # When the process is asked to stop while the stream is open
        sent = asyncio.run(_serve(endless, end=server_stops))
    finally:
        gateway._stopping.clear()
    # Then the response is completed (uvicorn waits for that before it exits) and the body closed
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert endless.closed and endless.on_close_calls == 1


def test_stream__serving_task_cancelled__body_closed():
    endless = Endless()

    async def scenario() -> None:
        app = Gateway(lambda *a: None, [Route("GET", "/stream", endless.endpoint(), authenticated=False)])  # type: ignore[arg-type, return-value]
        first = True

        async def receive() -> dict[str, Any]:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()
            return {}

        async def send(message: dict[str, Any]) -> None:
            pass

        scope = {"type": "http", "method": "GET", "path": "/stream", "headers": [], "query_string": b""}
        serving = asyncio.create_task(app(scope, receive, send))
        await asyncio.sleep(0.05)
        # When the server cancels the request's task (uvicorn's graceful-shutdown timeout)
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)

    asyncio.run(scenario())
    # Then the body was closed all the same
    assert endless.closed and endless.on_close_calls == 1
