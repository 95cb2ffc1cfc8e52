"""The wire formats of a webhook (pure: no database, no network). Each turns a
``webhooks.messages.WebhookMessage`` into what is sent; the delivery engine
(webhooks/delivery.py) picks one by ``WebhookEndpoint.format`` and calls ``render``.

Every HTTP format carries the Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``), not only ``generic``: they cost nothing, Slack and PagerDuty ignore
them, and a receiver behind a proxy of its own can still check who sent the body and drop a
retry it has already seen (the id is the delivery's, the same on every attempt).

- generic.py: the Standard Webhooks envelope and its signatures.
- slack.py: Block Kit, with Approve / Deny on a pending approval; ``outcome_message`` retires them.
- pagerduty.py: Events API v2, trigger and the resolve that closes it.
- cef.py: one CEF line (the HTTP body); syslog.py frames it for a syslog receiver (RFC 5424,
  RFC 6587 octet counting for TCP).
- text.py: the limits' arithmetic (UTF-16 units, clipping with an ellipsis).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from webhooks.formats import cef, generic, pagerduty, slack
from webhooks.messages import WebhookMessage


@dataclass(frozen=True, slots=True)
class Rendered:
    """One HTTP request's body and headers (``Content-Type`` included)."""

    body: bytes
    headers: dict[str, str]


class UnknownFormat(ValueError):
    """A format this module does not know (not a WebhookEndpoint.Format value)."""


def render(
    message: WebhookMessage,
    *,
    format: str,
    webhook_id: str,
    secrets: Sequence[str],
    routing_key: str,
    timestamp: datetime,
) -> Rendered:
    """The request for one attempt. ``webhook_id`` is the delivery's (constant across
    retries); ``timestamp`` is the attempt's (it is signed, and a receiver refuses a
    signature more than 5 minutes off); ``secrets`` are the endpoint's live secrets (two
    during a rotation's overlap, each signs); ``routing_key`` is PagerDuty's, ignored by
    the other formats."""
    bodies: dict[str, Callable[[], tuple[bytes, str]]] = {
        "generic": lambda: (generic.body(message), "application/json"),
        "slack": lambda: (slack.body(message), "application/json"),
        "pagerduty": lambda: (
            pagerduty.body(message, routing_key=routing_key, webhook_id=webhook_id),
            "application/json",
        ),
        "cef": lambda: (cef.line(message, webhook_id=webhook_id).encode(), "text/plain; charset=utf-8"),
    }
    if format not in bodies:
        raise UnknownFormat(f"unknown webhook format {format!r}; expected one of {', '.join(bodies)}")
    body, content_type = bodies[format]()
    headers = {
        "Content-Type": content_type,
        **generic.signature_headers(body, webhook_id=webhook_id, secrets=secrets, timestamp=timestamp),
    }
    return Rendered(body=body, headers=headers)
