"""The ``pagerduty`` format (Events API v2). Being written (wh-formats)."""

from __future__ import annotations

from webhooks.messages import WebhookMessage


def body(message: WebhookMessage, *, routing_key: str, webhook_id: str) -> bytes:
    raise NotImplementedError("pagerduty format: not yet")
