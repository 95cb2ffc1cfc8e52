"""The readiness probe (no authentication; it reveals only what is down). Liveness is
``/healthz``, served by the runtime gateway (runtime/endpoints/health.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

from common.database import run_in_db_thread
from common.errors import retry_after_headers

logger = logging.getLogger(__name__)

# The checks run side by side, each bounded by this: /readyz answers within about this long even
# when a dependency hangs (a probe that waits longer than its caller's timeout is no probe).
CHECK_TIMEOUT_SECONDS = 0.8


def _check_database() -> None:
    # Through run_in_db_thread: a worker thread that hands the connection back, behind the outage breaker.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_broker() -> None:
    from veto_cloud.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=0, timeout=CHECK_TIMEOUT_SECONDS)


async def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    # A channel of this loop's own (the pub/sub layer subscribes before anything is sent to it;
    # a message sent to a channel nobody listens on yet is gone).
    channel = await layer.new_channel("readyz.")
    marker = uuid.uuid4().hex
    await layer.send(channel, {"type": "readyz.ping", "marker": marker})
    message = await layer.receive(channel)
    # The pub/sub layer keeps a channel subscribed until a receive on it is cancelled: cancel one,
    # or every probe would leave a subscription behind.
    leftover = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    leftover.cancel()
    if message.get("marker") != marker:
        raise RuntimeError("channel layer returned a different message")


async def readyz(request: HttpRequest) -> JsonResponse:
    """Database, broker and channel layer all reachable: 200; otherwise 503 naming what failed."""
    # Not thread_sensitive: a hung check must not hold the request's own thread, which Django
    # joins when the request ends (the event loop would wait for it).
    checks: dict[str, Any] = {
        "database": lambda: run_in_db_thread(_check_database),
        "broker": sync_to_async(_check_broker, thread_sensitive=False),
        "channel_layer": _check_channel_layer,
    }
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS) for check in checks.values()),
        return_exceptions=True,
    )
    results: dict[str, str] = {}
    for name, outcome in zip(checks, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            # Any failure means not ready, and says which.
            if isinstance(outcome, TimeoutError):
                outcome = TimeoutError(f"no answer within {CHECK_TIMEOUT_SECONDS} s")
            logger.warning("readyz.check_failed check=%s error=%r", name, outcome)
            results[name] = f"error: {type(outcome).__name__}: {outcome}"[:300]
        else:
            results[name] = "ok"
    ready = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
        headers=retry_after_headers(200 if ready else 503),
    )
