"""The ``cef`` format (one CEF line). Being written (wh-formats)."""

from __future__ import annotations

from webhooks.messages import WebhookMessage


def line(message: WebhookMessage, *, webhook_id: str) -> str:
    raise NotImplementedError("cef format: not yet")
