"""The ``slack`` format (Block Kit). Being written (wh-formats)."""

from __future__ import annotations

from webhooks.messages import WebhookMessage


def body(message: WebhookMessage) -> bytes:
    raise NotImplementedError("slack format: not yet")
