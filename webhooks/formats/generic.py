"""The ``generic`` format: the message as JSON in the Standard Webhooks envelope, and the
Standard Webhooks signature headers that every HTTP format carries.

The envelope is ``{"type", "timestamp", "data"}`` (the spec's suggested payload): ``type`` is
the event, ``timestamp`` when it happened (not when it was sent, so every attempt sends the
same body), ``data`` the message's ``as_json()``. The signature is computed by the
``standardwebhooks`` package itself, so a receiver using it verifies what we sign by
construction rather than by our reading of the spec.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from math import floor

from standardwebhooks import Webhook

from webhooks.messages import WebhookMessage


def envelope(message: WebhookMessage) -> dict[str, object]:
    return {
        "type": message.event,
        "timestamp": _utc(message.occurred_at).isoformat().replace("+00:00", "Z"),
        "data": message.as_json(),
    }


def body(message: WebhookMessage) -> bytes:
    # Compact and UTF-8 (not \\u escapes): the bytes signed are the bytes sent, and
    # standardwebhooks decodes the body as UTF-8 before it verifies.
    return json.dumps(envelope(message), ensure_ascii=False, separators=(",", ":")).encode()


def signature_headers(
    body: bytes, *, webhook_id: str, secrets: Sequence[str], timestamp: datetime
) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` (unix seconds) and ``webhook-signature``: one
    ``v1,<base64>`` per secret, space-separated, so a receiver still holding the old secret
    during a rotation's overlap verifies too. No secret, no signature header."""
    when = _utc(timestamp)
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(floor(when.timestamp()))}
    text = body.decode()
    signatures = [Webhook(secret).sign(webhook_id, when, text) for secret in secrets]
    if signatures:
        headers["webhook-signature"] = " ".join(signatures)
    return headers


def _utc(when: datetime) -> datetime:
    # standardwebhooks' sign() does ``replace(tzinfo=utc)``, which shifts an aware time in
    # another zone by its offset: hand it UTC. A naive time is taken to be UTC already.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
