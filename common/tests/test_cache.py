"""The hot-path cache: single-flight loads, stale values served while one refresh runs."""

import asyncio

from common.cache import TtlCache


def test_get_or_load__concurrent_misses__share_one_load():
    cache: TtlCache[str, int] = TtlCache(10)
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return 42

    async def scenario() -> list[int]:
        return await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(20)))

    assert asyncio.run(scenario()) == [42] * 20
    assert calls == 1


def test_get_or_load__expired_value__served_while_one_refresh_runs():
    cache: TtlCache[str, int] = TtlCache(0.05)
    values = iter([1, 2, 3])

    async def load() -> int:
        await asyncio.sleep(0.02)
        return next(values)

    async def scenario() -> tuple[int, list[int], int]:
        first = await cache.get_or_load("k", load)
        await asyncio.sleep(0.06)  # expired, but younger than twice the TTL
        during = await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(5)))
        await asyncio.sleep(0.03)
        after = await cache.get_or_load("k", load)
        return first, during, after

    first, during, after = asyncio.run(scenario())
    assert first == 1
    assert during == [1] * 5  # stale value, no waiting
    assert after == 2  # exactly one refresh happened


def test_get_or_load__misses_are_not_cached_when_asked():
    cache: TtlCache[str, int | None] = TtlCache(10)
    calls = 0

    async def load() -> None:
        nonlocal calls
        calls += 1
        return None

    async def scenario() -> None:
        await cache.get_or_load("k", load, cache_none=False)
        await cache.get_or_load("k", load, cache_none=False)

    asyncio.run(scenario())
    assert calls == 2
