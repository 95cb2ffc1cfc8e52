"""The one event path (common.events): after commit only, once per process, across processes over
real Redis, and never at the expense of the write that committed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from common import events
from common import redis as common_redis
from common.events import Event, EventType, Reach
from tests.faults._services import own_redis

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def recording(*types: EventType, reach: Reach = Reach.EVERY_PROCESS) -> Iterator[list[Event]]:
    heard: list[Event] = []
    unsubscribe = events.subscribe(heard.append, *types, reach=reach)
    try:
        yield heard
    finally:
        unsubscribe()


def an_event(event_type: EventType = EventType.POLICY_PUBLISHED, **data: object) -> Event:
    return Event(event_type, uuid.uuid4(), "events", 7, timezone.now().replace(microsecond=5), data)  # type: ignore[arg-type]


def test_publish__inside_a_transaction__heard_only_once_it_commits():
    # Given a handler
    with recording(EventType.POLICY_PUBLISHED) as heard:
        event = an_event()
        # When an event is published inside a transaction
        with transaction.atomic():
            events.publish(event)
            # Then nothing is heard before the commit
            assert heard == []
        # And it is heard once, exactly as published, after it
        assert heard == [event]


def test_publish__transaction_rolled_back__never_heard():
    with recording(EventType.POLICY_PUBLISHED) as heard:
        # When the transaction that published rolls back (also a savepoint inside a committed one)
        with pytest.raises(RuntimeError), transaction.atomic():
            events.publish(an_event())
            raise RuntimeError("rolled back")
        with transaction.atomic():
            with pytest.raises(RuntimeError), transaction.atomic():
                events.publish(an_event())
                raise RuntimeError("savepoint rolled back")
            kept = an_event()
            events.publish(kept)
        # Then only what committed is heard
        assert heard == [kept]


def test_nobody_subscribes__nothing_is_sent_to_redis(monkeypatch, no_event_subscribers):
    # Given Redis configured, and a type nobody subscribes to
    sent: list[bytes] = []

    class Recording:
        def publish(self, channel: str, message: bytes) -> None:
            sent.append(message)

    monkeypatch.setattr(events, "sync_redis", lambda: Recording())
    assert EventType.DECISION_CREATED not in events.wanted()
    common_redis.reset_clients()
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"), recording(EventType.POLICY_PUBLISHED):
        # When such an event is dispatched, and then one that every process handles
        events.dispatch([an_event(EventType.DECISION_CREATED)])
        events.dispatch([an_event(EventType.POLICY_PUBLISHED), an_event(EventType.DECISION_CREATED)])
    # Then only the second dispatch sends, one message, with only the wanted event in it
    assert [[raw[0] for raw in json.loads(m)["events"]] for m in sent] == [["policy.published"]]


def test_one_process_handler__runs_in_the_publisher_only():
    # Given a sink that is shared (runs once, where the event is published)
    with recording(EventType.APPROVAL_REFUSED, reach=Reach.ONE_PROCESS) as heard:
        event = an_event(EventType.APPROVAL_REFUSED, approval_id="x")
        # When another process's message with that event arrives
        events._receive(json.dumps({"origin": "elsewhere", "events": [events.encode_event(event)]}).encode())
        assert heard == []
        # And when this process publishes it
        events.dispatch([event])
        # Then the sink ran for the local publish only
        assert heard == [event]


# --- across processes, over a real Redis ----------------------------------------------------------

LISTENER = """
import asyncio, json, sys
import django
django.setup()
from common import events

def heard(event):
    print("EVENT " + json.dumps(events.encode_event(event)), flush=True)

events.subscribe(heard, events.EventType.POLICY_PUBLISHED)
events.on_missed(lambda: print("SUBSCRIBED", flush=True))
asyncio.run(asyncio.wait_for(events.listen(), timeout=30))
"""


def _read_line(process: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"no {prefix!r} line from the other process")


def test_cross_process__event_published_here__heard_by_the_other_process_once_exactly_as_sent():
    # Given another process listening on a real Redis, and this process listening too
    with own_redis() as redis, override_settings(REDIS_URL=redis.url()):
        common_redis.reset_clients()
        env = {
            **os.environ,
            "REDIS_URL": redis.url(),
            "DJANGO_SETTINGS_MODULE": "veto_cloud.settings.test",
            "PYTHONPATH": str(ROOT),
            "VETO_REDIS_PUBSUB_PREFIX": settings.REDIS_PUBSUB_PREFIX,
        }
        other = subprocess.Popen(
            [sys.executable, "-c", LISTENER], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            _read_line(other, "SUBSCRIBED", timeout=20)
            with recording(EventType.POLICY_PUBLISHED) as heard_here:

                async def here() -> None:
                    listener = asyncio.create_task(events.listen())
                    try:
                        await asyncio.sleep(0.5)  # subscribed

                        # When a publish commits in this process
                        def commit() -> None:
                            with transaction.atomic():
                                events.publish(an_event(version=4, publication="publish"))

                        await asyncio.to_thread(commit)
                        await asyncio.sleep(0.5)  # this process's listener hears its own message too
                    finally:
                        listener.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await listener

                asyncio.run(here())
            # Then the other process hears it, as it was published
            assert events.decode_event(json.loads(_read_line(other, "EVENT ", timeout=10))) == heard_here[0]
            # And this process's handler ran once (at the commit), not again for its own message
            assert len(heard_here) == 1
        finally:
            other.kill()
            other.wait()
            common_redis.reset_clients()


def test_cross_process__listener_resubscribes_after_redis_restart__missed_handlers_called():
    # Given a listener on a Redis of the test's own
    calls: list[float] = []
    unregister = events.on_missed(lambda: calls.append(time.monotonic()))
    try:
        with own_redis() as redis, override_settings(REDIS_URL=redis.url()):

            async def scenario() -> int:
                listener = asyncio.create_task(events.listen())
                try:
                    await asyncio.sleep(0.5)
                    subscribed = len(calls)
                    # When Redis dies and comes back
                    await asyncio.to_thread(redis.stop)
                    await asyncio.sleep(0.5)
                    await asyncio.to_thread(redis.start)
                    deadline = time.monotonic() + 10
                    while len(calls) == subscribed and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    return len(calls) - subscribed
                finally:
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await listener

            # Then the missed-events handlers ran again once it was subscribed again
            assert asyncio.run(scenario()) == 1
    finally:
        unregister()


# --- on demand: decisions cross processes only while some process asks -------------------------


def _sent_by_dispatch(monkeypatch, *batches: list[Event]) -> list[list[str]]:
    """The types each dispatch would PUBLISH (Redis configured, the sends recorded)."""
    sent: list[bytes] = []

    class Recording:
        def publish(self, channel: str, message: bytes) -> None:
            sent.append(message)

    monkeypatch.setattr(events, "sync_redis", lambda: Recording())
    common_redis.reset_clients()
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        for batch in batches:
            events.dispatch(batch)
    return [[raw[0] for raw in json.loads(m)["events"]] for m in sent]


def _demand_notice(origin: str = "another-process:1") -> bytes:
    return json.dumps({"origin": origin, "demand": True}).encode()


def test_on_demand__nobody_asked__not_published_but_every_process_type_is(monkeypatch, no_event_subscribers):
    # Given a handler that wants decisions from every process on demand only, and one that
    # always wants publications
    monkeypatch.setattr(events, "_demanded_until", 0.0)
    with (
        recording(EventType.DECISION_CREATED, reach=Reach.EVERY_PROCESS_ON_DEMAND) as heard,
        recording(EventType.POLICY_PUBLISHED),
    ):
        # When both are dispatched and no other process has asked
        sent = _sent_by_dispatch(
            monkeypatch,
            [an_event(EventType.DECISION_CREATED)],
            [an_event(EventType.DECISION_CREATED), an_event(EventType.POLICY_PUBLISHED)],
        )
    # Then the decisions stay here (their local handler ran) and only the publication crosses
    assert sent == [["policy.published"]]
    assert len(heard) == 2


def test_on_demand__another_process_asked__published_until_its_notice_lapses(
    monkeypatch, no_event_subscribers
):
    monkeypatch.setattr(events, "_demanded_until", 0.0)
    clock = [1000.0]
    monkeypatch.setattr(events.time, "monotonic", lambda: clock[0])
    with recording(EventType.DECISION_CREATED, reach=Reach.EVERY_PROCESS_ON_DEMAND):
        # When another process says it holds streams
        events._receive(_demand_notice())
        asked = _sent_by_dispatch(monkeypatch, [an_event(EventType.DECISION_CREATED)])
        # and then says nothing more for longer than a notice lasts
        clock[0] += events.DEMAND_LAPSES_SECONDS + 0.1
        lapsed = _sent_by_dispatch(monkeypatch, [an_event(EventType.DECISION_CREATED)])
    assert asked == [["decision.created"]]
    assert lapsed == []


def test_on_demand__own_notice__asks_nothing_of_this_process(monkeypatch, no_event_subscribers):
    # A process holding streams hears its own notice: its own decisions reach them locally.
    monkeypatch.setattr(events, "_demanded_until", 0.0)
    with recording(EventType.DECISION_CREATED, reach=Reach.EVERY_PROCESS_ON_DEMAND):
        events._receive(_demand_notice(origin=events._origin()))
        assert _sent_by_dispatch(monkeypatch, [an_event(EventType.DECISION_CREATED)]) == []


def test_on_demand__event_from_another_process__handler_runs_here(no_event_subscribers):
    with recording(EventType.DECISION_CREATED, reach=Reach.EVERY_PROCESS_ON_DEMAND) as heard:
        event = an_event(EventType.DECISION_CREATED)
        message = {"origin": "another-process:1", "events": [events.encode_event(event)]}
        events._receive(json.dumps(message).encode())
    assert heard == [event]


def test_demand__notice_at_once_then_every_interval_while_asked(monkeypatch, settings):
    # Given Redis configured and the notices recorded
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    notices: list[dict] = []

    async def publish(payload: bytes, count: int) -> None:
        notices.append(json.loads(payload))

    monkeypatch.setattr(events, "_publish_async", publish)
    monkeypatch.setattr(events, "DEMAND_SECONDS", 0.05)
    streams = {"open": True}

    async def scenario() -> tuple[int, int]:
        # When a loop demands while its streams are open, twice (the second call adds nothing)
        events.demand(lambda: streams["open"])
        events.demand(lambda: streams["open"])
        await asyncio.sleep(0)
        at_once = len(notices)
        await asyncio.sleep(0.13)
        streams["open"] = False
        await asyncio.sleep(0.12)
        stopped_at = len(notices)
        await asyncio.sleep(0.12)
        assert len(notices) == stopped_at  # no notice once nothing is open
        return at_once, stopped_at

    at_once, total = asyncio.run(scenario())

    # Then the first notice went at once, more followed while open, from one task only
    assert at_once == 1
    assert 3 <= total <= 4
    assert all(n == {"origin": events._origin(), "demand": True} for n in notices)
