"""One asyncio Redis client per event loop (a client's connections belong to the loop that made them)."""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as redis_asyncio
from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis_asyncio.Redis] = (
    weakref.WeakKeyDictionary()
)


def redis_configured() -> bool:
    return bool(settings.REDIS_URL)


def async_redis() -> redis_asyncio.Redis:
    """The running loop's client for ``settings.REDIS_URL``."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = redis_asyncio.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
        _clients[loop] = client
    return client
