"""The request id: one id per HTTP request, in every log line written while it is handled and in
the Celery tasks it enqueues.

The gateway (runtime/gateway.py) takes a client's ``X-Request-ID`` when it is well formed
(``request_id_for``; a proxy's or the SDK caller's id then names the request end to end), makes one
otherwise, holds it in a context variable for the request's task (Django's sync views inherit it:
asgiref copies the context into the thread) and echoes it in the answer's ``X-Request-ID``.
``RequestIdFilter`` puts it on log records; the Celery signal handlers below carry it in a task's
headers to the worker that runs the task. Nothing here imports Django or Celery: uvicorn's parent
process loads the filter before any of them.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
from typing import Any

HEADER = b"x-request-id"
# The Celery message header that carries the id from the publisher to the worker.
TASK_HEADER = "veto_request_id"
# An incoming id is kept only if it is short and plain: it lands in every log line and in a
# response header, so nothing that could forge a line (newlines, quotes) or bloat them gets through.
MAX_LENGTH = 128
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:-]{1,%d}" % MAX_LENGTH)

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("veto_request_id", default=None)


def request_id_for(incoming: bytes | None) -> str:
    """``incoming`` (an ``X-Request-ID`` value) if it is 1-128 of ``A-Z a-z 0-9 . _ : -``, else a
    new uuid4 in hex."""
    if incoming is not None and _WELL_FORMED.fullmatch(incoming):
        return incoming.decode("ascii")
    # uuid4's bits without its object: ~0.7 us against uuid.uuid4().hex's ~2.2 us
    # (benchmarks/request_id_overhead.py), on every request that comes without an id.
    random = bytearray(os.urandom(16))
    random[6] = (random[6] & 0x0F) | 0x40  # version 4
    random[8] = (random[8] & 0x3F) | 0x80  # RFC 4122 variant
    return random.hex()


def current_request_id() -> str | None:
    return _current.get()


def set_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    return _current.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)


def without_request_id() -> contextvars.Context:
    """A copy of the current context with no request id, for a task that a request starts but that
    outlives it or serves many (a batch writer, a loop's recheck): its log lines are no one request's."""
    context = contextvars.copy_context()
    context.run(_current.set, None)
    return context


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` while a request (or a task it enqueued) is handled; a record
    outside one gets none, so the JSON line has no ``request_id`` key."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _current.get()
        if request_id is not None:
            record.request_id = request_id
        return True


# --- Celery (connected in veto_cloud/celery.py) ------------------------------------------------

_task_tokens: dict[str, contextvars.Token[str | None]] = {}


def put_in_task_headers(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``before_task_publish``: a task enqueued while a request is handled carries its id."""
    request_id = _current.get()
    if request_id is not None and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


def take_from_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """``task_prerun``: the worker runs the task under the id it was published with (none if it
    had none: a periodic task, or one enqueued outside a request). An eager task runs in its
    caller's context and keeps the caller's id."""
    request = getattr(task, "request", None)
    if task_id is None or getattr(request, "is_eager", False):
        return
    _task_tokens[task_id] = _current.set(getattr(request, TASK_HEADER, None))


def forget_after_task(task_id: str | None = None, **_: Any) -> None:
    """``task_postrun``: the id set for the task is gone once it ends."""
    token = _task_tokens.pop(task_id, None) if task_id is not None else None
    if token is not None:
        _current.reset(token)
