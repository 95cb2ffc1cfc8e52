"""Endpoints and deliveries for the engine's tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from audit.models import ChainStream
from audit.selectors import chain_heads_of_team
from webhooks import sink
from webhooks.models import WebhookEndpoint, WebhookSecret
from webhooks.services import secret_generate


def endpoint_for(team, *, url: str, events=("deny",), at_heads: bool = True, **fields) -> WebhookEndpoint:
    """An enabled endpoint with one live secret; its cursors at the streams' heads (as the API
    creates them) unless ``at_heads`` is False."""
    heads = chain_heads_of_team(team_id=team.id) if at_heads else {}
    endpoint = WebhookEndpoint.objects.create(
        team=team,
        name=fields.pop("name", "receiver"),
        url=url,
        events=list(events),
        decisions_cursor=heads.get(ChainStream.DECISIONS, 0),
        events_cursor=heads.get(ChainStream.EVENTS, 0),
        **fields,
    )
    WebhookSecret.objects.create(endpoint=endpoint, secret=secret_generate())
    return endpoint


@contextmanager
def sink_paused() -> Iterator[None]:
    """The process's sink ignores events: a test dispatches by hand, with nothing racing it."""
    sender = sink.sender()
    sender.enabled = False
    try:
        yield
    finally:
        sender.enabled = True
