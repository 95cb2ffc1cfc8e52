"""The HTTP/1.1 protocol the web server runs: uvicorn's httptools protocol plus the time bounds and
the close it lacks (``python -m veto_cloud.serve`` and the tests' live server both pass it).

uvicorn bounds only the idle time between requests (``--timeout-keep-alive``), and that timer is
cancelled by every byte received, so a client trickling a request one byte a second held its
connection (and a slot of the server) for ever; a connection that sent nothing was never closed at
all. ASGI code cannot help: it runs once the headers are in. This protocol adds, per connection:

* ``VETO_HTTP_HEADER_TIMEOUT_SECONDS`` (default 10): from the connection's start, or from the first
  byte of a further request on it, the request line and headers must be in within this long;
  otherwise the connection is closed.
* ``VETO_HTTP_BODY_TIMEOUT_SECONDS`` (default 30): from the end of the headers the whole body must
  be in within this long; otherwise the server answers 408 (when nothing was answered yet), the
  application's ``receive()`` hears a disconnect, and the connection is closed.
* A lingering close: when the server closes a connection whose request body is still arriving (a
  413, a 408, ``Connection: close``), it first sends what it has to say, half-closes (FIN), and
  keeps reading and discarding for up to ``VETO_HTTP_LINGER_SECONDS`` (default 2) or until the
  client closes. Closing a socket with unread data makes the kernel send a reset, and a client
  still busy sending its body then never reads the answer (measured: 9 of 10 urllib requests with a
  3 MB body got a broken pipe instead of the 413).

The idle time between requests stays uvicorn's ``--timeout-keep-alive``
(``VETO_HTTP_KEEPALIVE_TIMEOUT_SECONDS``, default 5), set by veto_cloud/serve.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from veto_cloud.env import env_float

logger = logging.getLogger("veto_cloud.http")

HEADER_TIMEOUT_SECONDS = env_float("VETO_HTTP_HEADER_TIMEOUT_SECONDS", 10.0, minimum=0.1)
BODY_TIMEOUT_SECONDS = env_float("VETO_HTTP_BODY_TIMEOUT_SECONDS", 30.0, minimum=0.1)
LINGER_SECONDS = env_float("VETO_HTTP_LINGER_SECONDS", 2.0, minimum=0.0)


class _LingeringTransport:
    """The transport as a request's cycle sees it: ``close()`` lingers while the body is unread."""

    def __init__(self, transport: asyncio.Transport, protocol: VetoHttpProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_lingering()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class VetoHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._body_pending = False  # headers in, body not complete yet
        self.lingering = False

    # --- the connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # what is left of a body nobody will read
        super().data_received(data)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        if self.lingering:
            self._close_now()
        return None

    # --- parser callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel(self._header_timer)
        self._header_timer = None
        super().on_headers_complete()
        if self.parser.should_upgrade() and self._should_upgrade():
            return  # a WebSocket: handle_websocket_upgrade hands the connection over
        cycle = self.cycle
        if cycle is not None and not isinstance(cycle.transport, _LingeringTransport):
            cycle.transport = _LingeringTransport(self.transport, self)  # type: ignore[assignment]
        self._body_pending = True
        self._body_timer = self.loop.call_later(BODY_TIMEOUT_SECONDS, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._body_pending = False
        self._cancel(self._body_timer)
        self._body_timer = None
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()
        super().handle_websocket_upgrade()

    # --- timeouts --------------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._headers_timed_out)

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        logger.info("http.header_timeout client=%s", self.client)
        self._close_now()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.lingering:
            return
        logger.info("http.body_timeout client=%s", self.client)
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            message = f"the request body did not arrive within {BODY_TIMEOUT_SECONDS:g} s"
            body = json.dumps({"error": {"code": "request_timeout", "message": message}}).encode()
            self.transport.write(
                STATUS_LINE[408]
                + b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                % len(body)
                + body
            )
        if cycle is not None:
            # The application's receive() now answers http.disconnect: it stops waiting for the body.
            cycle.disconnected = True
            cycle.message_event.set()
        self.close_lingering()

    # --- closing ---------------------------------------------------------------------------------

    def close_lingering(self) -> None:
        """Close after what was written is sent; while the request body is still arriving, read and
        discard it for a while first, so that the client reads the answer instead of a reset."""
        if self.lingering or self.transport.is_closing():
            return
        if not self._body_pending or LINGER_SECONDS == 0 or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.lingering = True
        self._cancel_timers()
        self.transport.write_eof()
        self.transport.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self._close_now)

    def _close_now(self) -> None:
        self._cancel_timers()
        if not self.transport.is_closing():
            self.transport.close()

    def timeout_keep_alive_handler(self) -> None:
        self._close_now()

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer, self._linger_timer):
            self._cancel(timer)
        self._header_timer = self._body_timer = self._linger_timer = None
