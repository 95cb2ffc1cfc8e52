"""The runtime gateway: a thin ASGI layer that serves the SDK's hot endpoints natively async.

Why it exists (measured, see README "Performance"): under ASGI, Django runs every
``MiddlewareMixin`` middleware and every sync signal receiver through
``sync_to_async``, on a thread created per request. On this project's 2-core
machine that capped Django at about 500 requests/s, while the server itself
answers 35,000+/s. Validate is on every governed tool call of every agent, so
it, the client-side decision log and the health probe are served here, with no
middleware and no thread hop on the common path. Everything else (admin API,
dashboard, admin site, OpenAPI) is plain Django behind it.

An endpoint is ``async def endpoint(request: GatewayRequest, **params) -> GatewayResponse``.
It parses its body with ``request.parse(PydanticModel)`` and raises
``ApplicationError`` subclasses; both become the same
``{"error": {"code", "message", "details"}}`` bodies as the Django API. Blocking
database work goes through ``run_in_db_thread`` (a worker thread); the decision writer
does its I/O asynchronously. Nothing blocks the event loop.

An endpoint may instead answer a ``StreamingResponse`` (Server-Sent Events, runtime/endpoints/
events.py): its body is an async iterator of chunks, sent as they come, with the same security
headers as every other answer. It ends when the iterator does, when the client goes away
(``http.disconnect``), and when the process is asked to stop (SIGINT/SIGTERM, ``server_stopping``):
uvicorn waits for open responses before it exits, so a stream that ignored the signal would hold
`make run`'s Ctrl-C for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import logging
import re
import signal
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ValidationError

from common.edge import (
    body_limit,
    body_too_large,
    json_loads,
    malformed_json,
    refuse_json_constants,
    refuse_nul,
)
from common.errors import InvalidInput, error_body, error_for_exception, retry_after_headers
from common.request_id import HEADER as REQUEST_ID_HEADER
from common.request_id import request_id_for, reset_request_id, set_request_id

logger = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
# An ASGI application (Django's ASGIHandler, here): events are read and sent as mappings.
ASGIApp = Callable[
    [
        dict[str, Any],
        Callable[[], Awaitable[Mapping[str, Any]]],
        Callable[[Mapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


@dataclass(slots=True)
class GatewayRequest:
    method: str
    path: str
    query_string: bytes
    headers: dict[str, str]
    body: bytes
    client: str | None = None
    # Header names the client sent more than once (``headers`` keeps the last value of each).
    duplicate_headers: frozenset[str] = frozenset()

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def query(self, name: str) -> str | None:
        values = parse_qs(self.query_string.decode("latin-1")).get(name)
        return values[-1] if values else None

    def parse(self, model: type[M]) -> M:
        """The JSON body validated against ``model``; a 400 naming every bad field otherwise."""
        if not self.body:
            raise InvalidInput("request body is empty; expected a JSON object", code="malformed_json")
        # PostgreSQL text and jsonb cannot hold U+0000; refuse it here, by name, rather than
        # fail at write time.
        refuse_nul(self.body)
        refuse_json_constants(self.body)
        try:
            return model.model_validate_json(self.body)
        except ValidationError as exc:
            raise _invalid_input(exc, self.body) from exc


def _invalid_input(exc: ValidationError, body: bytes) -> InvalidInput:
    errors = exc.errors(include_url=False, include_input=False)
    if any(error["type"] == "json_invalid" for error in errors):
        # Said as Django's API says it (common.edge.json_loads: the reason, with line and column);
        # read again only on this error path, the common path parses once.
        try:
            json_loads(body)
        except InvalidInput as refusal:
            return refusal
        return malformed_json(errors[0]["msg"])
    problems = [
        {"path": ".".join(str(part) for part in error["loc"]) or "(body)", "message": error["msg"]}
        for error in errors
    ]
    first = problems[0]
    return InvalidInput(f"{first['path']}: {first['message']}", details={"errors": problems})


# Sent with every gateway answer; tuples built once, so the hot path only extends a list.
_NOSNIFF = ((b"x-content-type-options", b"nosniff"),)
_NO_STORE = ((b"cache-control", b"no-store"),)


@dataclass(slots=True)
class GatewayResponse:
    status: int
    # A pydantic model or JSON-able value, or bytes sent as they are (with content_type).
    body: Any
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_type: bytes = b"application/json"


def json_response(body: Any, *, status: int = 200) -> GatewayResponse:
    return GatewayResponse(status, body)


@dataclass(slots=True)
class StreamingResponse:
    """A 200 whose body is sent chunk by chunk as ``body`` yields it (no content-length); see the
    module docstring for when it ends. ``body`` is closed (``aclose``) however it ends."""

    body: AsyncGenerator[bytes, None]
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_type: bytes = b"application/octet-stream"
    status: int = 200
    # Called once the response is over, however it ended (also when the body never started).
    on_close: Callable[[], None] | None = None


Endpoint = Callable[..., Awaitable[GatewayResponse | StreamingResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: str
    endpoint: Endpoint
    # For the OpenAPI document (runtime/openapi.py); the endpoint itself parses and answers.
    request_model: type[BaseModel] | None = None
    response_model: type[BaseModel] | None = None
    status: int = 200
    authenticated: bool = True

    def compiled(self) -> re.Pattern[str]:
        return re.compile("^" + self.pattern + "$")


# Past this much, an oversized body is no longer read and discarded but left unread (the
# connection is then closed gracefully, see _refuse_too_large).
MAX_DRAINED_BODY_BYTES = 16 * 1024 * 1024


class _Body(enum.Enum):
    DISCONNECTED = "the client went away (or the server answered 408 for a body that never came)"
    DRAINED = "the rest of an oversized body was read and discarded"
    UNREAD = "the rest of an oversized body was left unread"


def _declared_length(raw_headers: Sequence[tuple[bytes, bytes]]) -> int:
    for name, value in raw_headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _drain(receive: Any, already_read: int) -> _Body:
    """Read and discard the rest of a request body (DRAINED), unless it runs past the bound (UNREAD)."""
    size = already_read
    while size <= MAX_DRAINED_BODY_BYTES:
        message = await receive()
        if message["type"] == "http.disconnect":
            return _Body.DISCONNECTED
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return _Body.DRAINED
    return _Body.UNREAD


def _header(raw_headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The last value of header ``name`` (lower case, as the server hands names over)."""
    found = None
    for raw_name, value in raw_headers:
        if raw_name == name:
            found = value
    return found


def _echoing_request_id(send: Any, request_id: bytes) -> Callable[[Mapping[str, Any]], Awaitable[None]]:
    """``send`` with ``X-Request-ID`` added to the response's start, whoever answers (an endpoint
    here, Django behind)."""

    async def send_with_request_id(message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)]}
        await send(message)

    return send_with_request_id


def _repeated_names(raw_headers: Sequence[tuple[bytes, bytes]]) -> frozenset[str]:
    seen: set[str] = set()
    repeated: set[str] = set()
    for raw_name, _ in raw_headers:
        name = raw_name.decode("latin-1").lower()
        (repeated if name in seen else seen).add(name)
    return frozenset(repeated)


# --- the process being asked to stop ----------------------------------------------------------

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stopping: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = weakref.WeakKeyDictionary()
_stop_requested = False
_chained = False


def _on_stop_signal(previous: Any, signum: int, frame: FrameType | None) -> None:
    global _stop_requested
    _stop_requested = True
    for loop, stopping in list(_stopping.items()):
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(stopping.set)
    # Then whoever handled the signal before (uvicorn's graceful exit; a second Ctrl-C forces it).
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


def _chain_stop_signals() -> None:
    """Hear SIGINT/SIGTERM before the server does, once per process (from the main thread only:
    signal handlers can be set nowhere else). uvicorn sets its handlers with ``signal.signal``
    and, on the signal, waits for every open response to finish: streams must end first, and
    no ASGI event tells them (lifespan shutdown comes only after that wait)."""
    global _chained
    if _chained or threading.current_thread() is not threading.main_thread():
        return
    _chained = True
    for signum in _STOP_SIGNALS:
        signal.signal(signum, functools.partial(_on_stop_signal, signal.getsignal(signum)))


def server_stopping() -> asyncio.Event:
    """This loop's event set once the process is asked to stop (see ``_chain_stop_signals``)."""
    loop = asyncio.get_running_loop()
    stopping = _stopping.get(loop)
    if stopping is None:
        stopping = _stopping[loop] = asyncio.Event()
        if _stop_requested:
            stopping.set()
    _chain_stop_signals()
    return stopping


async def _until_disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class Gateway:
    def __init__(
        self,
        fallback: ASGIApp,
        routes: list[Route],
        *,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    ) -> None:
        """``background`` coroutines run for the life of each worker, started by its first request."""
        self.fallback = fallback
        self._background = list(background)
        self._started: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.exact: dict[tuple[str, str], Endpoint] = {}
        self.patterns: list[tuple[str, re.Pattern[str], Endpoint]] = []
        for route in routes:
            if any(ch in route.pattern for ch in "()[]*+?\\"):
                self.patterns.append((route.method, route.compiled(), route.endpoint))
            else:
                self.exact[(route.method, route.pattern)] = route.endpoint

    def _match(self, method: str, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        endpoint = self.exact.get((method, path))
        if endpoint is not None:
            return endpoint, {}
        for route_method, pattern, route_endpoint in self.patterns:
            if route_method == method:
                found = pattern.match(path)
                if found:
                    return route_endpoint, found.groupdict()
        return None

    def _start_background(self) -> None:
        loop = asyncio.get_running_loop()
        if id(loop) in self._started:
            return
        self._started.add(id(loop))
        for work in self._background:
            task = loop.create_task(work())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._background:
            # Before the request id is set: these tasks keep the context they start in.
            self._start_background()
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        request_id = request_id_for(_header(scope["headers"], REQUEST_ID_HEADER))
        send = _echoing_request_id(send, request_id.encode("ascii"))
        token = set_request_id(request_id)
        try:
            matched = self._match(scope["method"], scope["path"])
            if matched is not None:
                await self._serve(scope, receive, send, *matched)
            elif scope["path"].startswith("/v1/") and _declared_length(scope["headers"]) > body_limit():
                # Django's handler would first spool the whole body to disk, however large.
                await self._refuse_too_large(scope, receive, send)
            else:
                await self.fallback(scope, receive, send)
        finally:
            reset_request_id(token)

    async def _refuse_too_large(
        self, scope: dict[str, Any], receive: Any, send: Any, already_read: int = 0
    ) -> None:
        """413, once the rest of the body is read and discarded (up to MAX_DRAINED_BODY_BYTES).

        A client still sending its body reads the answer only if the server reads what it sends:
        closing a socket with unread data resets the connection. A body past the bound is left
        unread and the connection closed: veto_cloud/http_protocol.py closes it gracefully."""
        raw = scope["headers"]
        if _declared_length(raw) > MAX_DRAINED_BODY_BYTES or (b"expect", b"100-continue") in raw:
            drained = _Body.UNREAD  # not worth reading, or not even sent yet (the client awaits a go-ahead)
        else:
            drained = await _drain(receive, already_read)
        if drained is _Body.DISCONNECTED:
            return
        refusal = body_too_large()
        response = GatewayResponse(refusal.status_code, error_body(refusal.code, refusal.message))
        if drained is _Body.UNREAD:
            response.headers.append((b"connection", b"close"))
        await self._send(send, response)

    async def _serve(
        self, scope: dict[str, Any], receive: Any, send: Any, endpoint: Endpoint, params: dict[str, str]
    ) -> None:
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
        }
        # Counted only when the dict came out shorter than the list: the common request pays nothing.
        duplicates = (
            _repeated_names(scope["headers"]) if len(headers) < len(scope["headers"]) else frozenset()
        )
        limit = body_limit()
        if _declared_length(scope["headers"]) > limit:
            await self._refuse_too_large(scope, receive, send)
            return
        body = await self._read_body(receive, limit)
        if isinstance(body, _Body):  # only ever DISCONNECTED here
            return  # nobody to answer (or the server answered 408 for a body that never came)
        if isinstance(body, int):
            await self._refuse_too_large(scope, receive, send, already_read=body)
            return
        client = scope.get("client")
        request = GatewayRequest(
            method=scope["method"],
            path=scope["path"],
            query_string=scope.get("query_string", b""),
            headers=headers,
            body=body,
            client=client[0] if client else None,
            duplicate_headers=duplicates,
        )
        try:
            response = await endpoint(request, **params)
        except Exception as exc:  # noqa: BLE001 - mapped below; anything unmapped is a bug, logged as one
            mapped = error_for_exception(exc)
            if mapped is None:
                logger.exception("gateway.unhandled_error path=%s", request.path)
                mapped = (500, error_body("internal_error", "internal server error"))
            response = GatewayResponse(
                mapped[0],
                mapped[1],
                headers=[
                    (k.lower().encode(), v.encode())
                    for k, v in {**retry_after_headers(mapped[0]), **getattr(exc, "headers", {})}.items()
                ],
            )
        if isinstance(response, StreamingResponse):
            await self._stream(receive, send, response, path=request.path)
            return
        await self._send(send, response)

    @staticmethod
    def _headers(response: GatewayResponse | StreamingResponse) -> list[tuple[bytes, bytes]]:
        headers = [*response.headers, *_NOSNIFF]
        # As Django's pages have them. An endpoint with its own caching (the rule set's ETag and
        # no-cache) keeps it; every other answer is for one key's holder and is not stored.
        if not any(name == b"cache-control" for name, _ in response.headers):
            headers += _NO_STORE
        return headers

    @classmethod
    async def _stream(cls, receive: Any, send: Any, response: StreamingResponse, *, path: str) -> None:
        """Send ``response.body`` chunk by chunk until it ends, the client disconnects or the
        process is asked to stop; then close the body (its ``finally`` blocks run)."""
        headers = [(b"content-type", response.content_type), *cls._headers(response)]
        body = response.body

        async def pump() -> None:
            async with contextlib.aclosing(body):
                async for chunk in body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})

        try:
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            pumping = asyncio.ensure_future(pump())
            disconnected = asyncio.ensure_future(_until_disconnected(receive))
            stopping = asyncio.ensure_future(server_stopping().wait())
            watched = (pumping, disconnected, stopping)
            try:
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # Also when this task is cancelled (a server's graceful-shutdown timeout).
                for task in watched:
                    task.cancel()
                await asyncio.gather(*watched, return_exceptions=True)
        finally:
            if response.on_close is not None:
                response.on_close()
        if pumping.done() and not pumping.cancelled() and pumping.exception() is not None:
            # Headers are out: nothing left to answer but an end; the client resumes.
            logger.error("gateway.stream_failed path=%s", path, exc_info=pumping.exception())
        if not disconnected.done() or disconnected.cancelled():
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _read_body(receive: Any, limit: int) -> bytes | int | _Body:
        """The body; or, past ``limit``, how many bytes were read; or _Body.DISCONNECTED."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # A truncated body must never be served as if it were the request.
                return _Body.DISCONNECTED
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return size
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _send(send: Any, response: GatewayResponse) -> None:
        if isinstance(response.body, bytes):
            payload = response.body
        elif isinstance(response.body, BaseModel):
            payload = response.body.model_dump_json(by_alias=True).encode("utf-8")
        else:
            payload = json.dumps(response.body, separators=(",", ":"), default=str).encode("utf-8")
        headers = [
            (b"content-type", response.content_type),
            (b"content-length", str(len(payload)).encode()),
            *Gateway._headers(response),
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
