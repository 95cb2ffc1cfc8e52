"""What the event path announces, heard by a test: one helper for the event tests of every app."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from common import events
from common.events import Event, EventType


@contextlib.contextmanager
def recording(*types: EventType) -> Iterator[list[Event]]:
    """The committed events of ``types``, in the order they were dispatched, while the block runs."""
    heard: list[Event] = []
    unsubscribe = events.subscribe(heard.append, *types)
    try:
        yield heard
    finally:
        unsubscribe()
