"""The hot-path cache: single-flight loads, refresh ahead, and a TTL that is a hard bound."""

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


def test_get_or_load__past_half_the_ttl__served_while_one_refresh_runs():
    # Given a value loaded at t=0 with a 0.4 s TTL
    cache: TtlCache[str, int] = TtlCache(0.4)
    values = iter([1, 2, 3])
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return next(values)

    async def scenario() -> tuple[int, list[int], int]:
        first = await cache.get_or_load("k", load)
        await asyncio.sleep(0.22)  # past half the TTL, still inside it
        # When five reads arrive
        during = await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(5)))
        await asyncio.sleep(0.04)
        after = await cache.get_or_load("k", load)
        return first, during, after

    # Then they are served the current value at once, and exactly one refresh replaced it
    first, during, after = asyncio.run(scenario())
    assert first == 1
    assert during == [1] * 5
    assert after == 2
    assert calls == 2


def test_get_or_load__past_the_ttl__never_served_the_old_value():
    # Given a value whose TTL has run out (no read came in between to refresh it)
    cache: TtlCache[str, int] = TtlCache(0.05)
    values = iter([1, 2])

    async def load() -> int:
        await asyncio.sleep(0.01)
        return next(values)

    async def scenario() -> tuple[int, int]:
        first = await cache.get_or_load("k", load)
        await asyncio.sleep(0.06)
        # When it is read again
        return first, await cache.get_or_load("k", load)

    # Then the read waits for the new value rather than being served the expired one
    assert asyncio.run(scenario()) == (1, 2)


def test_get_or_load__refresh_finds_the_value_gone__the_old_one_is_dropped_at_once():
    # Given a cached principal-like value, and a source that no longer has it (a revoked key)
    cache: TtlCache[str, str | None] = TtlCache(0.4)
    answers: list[str | None] = ["key", None, None]
    loads = 0

    async def load() -> str | None:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return answers[loads - 1]

    async def scenario() -> list[str | None]:
        seen = [await cache.get_or_load("k", load, cache_none=False)]
        await asyncio.sleep(0.21)  # past half the TTL: the next read starts a refresh
        seen.append(await cache.get_or_load("k", load, cache_none=False))
        await asyncio.sleep(0.05)  # the refresh has answered None
        # When the value is read again, well inside the old entry's TTL
        seen.append(await cache.get_or_load("k", load, cache_none=False))
        return seen

    # Then the old value is not served any more
    assert asyncio.run(scenario()) == ["key", "key", None]


def test_get_or_load__slow_load__ttl_counts_from_when_the_read_started():
    # Given a load that takes most of the TTL
    cache: TtlCache[str, int] = TtlCache(0.1)
    values = iter([1, 2])

    async def load() -> int:
        await asyncio.sleep(0.08)
        return next(values)

    async def scenario() -> tuple[int, int]:
        first = await cache.get_or_load("k", load)
        await asyncio.sleep(0.03)  # 0.11 s after the first read started, 0.03 s after it ended
        return first, await cache.get_or_load("k", load)

    # Then the value read 0.11 s ago is not served: it is older than the TTL
    assert asyncio.run(scenario()) == (1, 2)


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
