"""The readiness probe (no authentication; it reveals only what is down). Liveness is
``/healthz``, served by the runtime gateway (common/runtime.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_broker() -> None:
    from veto_cloud.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


async def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    # A plain channel name, not new_channel(): process-specific channels share one receive loop
    # with the process's listeners, which may run on another event loop than this view.
    channel = f"readyz.{uuid.uuid4().hex}"
    marker = uuid.uuid4().hex
    await layer.send(channel, {"type": "readyz.ping", "marker": marker})
    message = await layer.receive(channel)
    if message.get("marker") != marker:
        raise RuntimeError("channel layer returned a different message")


async def readyz(request: HttpRequest) -> JsonResponse:
    """Database, broker and channel layer all reachable: 200; otherwise 503 naming what failed."""
    checks: dict[str, Any] = {
        "database": sync_to_async(_check_database, thread_sensitive=True),
        "broker": sync_to_async(_check_broker, thread_sensitive=False),
        "channel_layer": _check_channel_layer,
    }
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready, and says which
            logger.warning("readyz.check_failed check=%s error=%s", name, exc)
            results[name] = f"error: {type(exc).__name__}: {exc}"[:300]
    ready = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": results}, status=200 if ready else 503
    )
