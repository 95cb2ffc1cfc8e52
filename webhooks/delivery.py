"""Sending deliveries: one attempt at a time, the retry schedule, an endpoint's health, ``enqueue``.

A delivery is a row that is due when ``next_attempt_at`` has passed. An attempt is claimed by
one conditional UPDATE (still pending, still due, still at the attempt count read), which also
pushes ``next_attempt_at`` a lease ahead: two workers (a task and the sweep, a task run twice)
never send the same attempt, and a worker that dies mid-send leaves a delivery that is due
again once the lease is over. The answer is recorded (a ``WebhookAttempt``) together with what
follows from it, in one transaction.

What an answer means:

* 2xx: delivered. A syslog send that did not fail is delivered (syslog has no answer).
* 410 Gone: the receiver says it is gone for good: the delivery fails and the endpoint is
  disabled (``disabled_reason`` gone), its pending deliveries cancelled.
* 400, 413, 422: final, not retried. The same body would be refused again (PagerDuty's Events
  API answers 400 to an event it will never accept and says not to retry it).
* Everything else (timeouts, refused connections, 3xx, 401, 403, 404, 408, 409, 429, 5xx, a
  URL the SSRF guard refuses now): retried on the schedule. 401/403/404 are usually a receiver's
  configuration, which its owner can fix within the schedule's day and a bit, so like Svix we
  keep trying rather than lose the message.

The schedule (``VETO_WEBHOOK_RETRY_SCHEDULE``, Svix's by default): at once, then 5 s, 5 min,
30 min, 2 h, 5 h, 10 h, 10 h after each failure, each wait ±10 % jitter so that an endpoint's
many retries do not arrive in one burst; a ``Retry-After`` answer (seconds or an HTTP date)
waits at least that long, up to ``VETO_WEBHOOK_RETRY_AFTER_MAX_SECONDS``. When the schedule runs
out the delivery has failed. A re-send by hand is one attempt: if it fails the delivery is
failed again (the person who asked sees the answer in the log).

An endpoint's health: its first failed attempt since the last success is ``failing_since``; one
success clears it; an attempt that fails when ``failing_since`` is
``VETO_WEBHOOK_FAILURE_WINDOW_SECONDS`` (5 days) old disables the endpoint (reason failing).
Either disabling appends a ``webhook.failed`` entry to the team's governance trail, which the
event path announces, so the team's other endpoints receive it and admins see it.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.trail import audit_event_append
from webhooks import transport
from webhooks.formats import render
from webhooks.messages import WebhookMessage
from webhooks.models import (
    RESPONSE_SNIPPET_MAX,
    SlackMessage,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from webhooks.ssrf import SYSLOG_SCHEMES

logger = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({400, 413, 422})
GONE_STATUS = 410
JITTER = 0.1
# How long a claimed attempt may take before its delivery is due again (a worker that died
# mid-send): well over the request timeout.
LEASE_SECONDS = 60.0
# A retry this soon also gets a task with a countdown, so it is not late by up to one sweep
# period; later ones are left to the sweep (a long countdown sits in the broker for hours).
COUNTDOWN_MAX_SECONDS = 60.0
# Deliveries per task: a burst of a thousand is a hundred broker messages, not a thousand (each
# costs the sender 1-10 ms), and still spreads over every worker thread.
TASK_BATCH = 10
TRAIL_ACTOR = "veto (webhooks)"


# --- enqueue ------------------------------------------------------------------------------------


def enqueue(delivery_ids: Iterable[uuid.UUID | str], *, manual: bool = False) -> None:
    """Send these deliveries soon: one Celery task each, scheduled once the current transaction
    commits (at once outside one). A broker that is down is logged, never raised: the rows are
    committed and due, and the beat sweep (webhooks.tasks.sweep) sends them when it can.
    ``manual`` marks the attempts as a re-send by hand in the delivery log."""
    ids = [str(delivery_id) for delivery_id in delivery_ids]
    if ids:
        transaction.on_commit(lambda: _send_tasks(ids, manual=manual))


@contextmanager
def broker_producer() -> Iterator[Any]:
    """A pooled Celery producer whose connection is up, or a kombu ``OperationalError`` at once:
    publishing on a connection that is not up retries connecting (6 s against a Redis port that
    refuses, measured), which a request's after-commit or the sink's thread must not wait for."""
    from webhooks.tasks import deliver_many

    with deliver_many.app.producer_or_acquire() as producer:
        producer.connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, interval_max=0.2)
        yield producer


def _send_tasks(ids: list[str], *, manual: bool, countdown: float | None = None) -> None:
    from webhooks.tasks import deliver_many

    batches = [ids[start : start + TASK_BATCH] for start in range(0, len(ids), TASK_BATCH)]
    sent = 0
    try:
        # One producer (one broker connection) for all of them; retry=False: a broker that is
        # away must not hold the caller (a request, a dispatch) for Celery's publish retries.
        with broker_producer() as producer:
            for batch in batches:
                deliver_many.apply_async((batch, manual), countdown=countdown, retry=False, producer=producer)
                sent += len(batch)
    except Exception:  # noqa: BLE001 - any broker error: the rows are due, the sweep sends them
        logger.warning(
            "webhook.enqueue_failed deliveries=%d: the sweep will send them", len(ids) - sent, exc_info=True
        )


# --- the schedule -------------------------------------------------------------------------------


def retry_wait(
    failed_attempts: int, *, retry_after: float | None = None, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait after the ``failed_attempts``-th failed attempt (1 for the first) before
    the next, or None when the schedule is over."""
    schedule = settings.VETO_WEBHOOK_RETRY_SCHEDULE
    if failed_attempts < 1 or failed_attempts > len(schedule):
        return None
    wait = schedule[failed_attempts - 1]
    wait *= 1 + (rng or random).uniform(-JITTER, JITTER)
    if retry_after is not None:
        wait = max(wait, min(retry_after, settings.VETO_WEBHOOK_RETRY_AFTER_MAX_SECONDS))
    return max(0.0, wait)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """A ``Retry-After`` header in seconds from ``now``: delta-seconds or an HTTP date; None when
    absent or unreadable (then the schedule alone decides)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


# --- one attempt --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    status_code: int | None
    error: str
    latency_ms: float
    snippet: str
    retry_after: float | None


def attempt_due(delivery_id: str | uuid.UUID, *, manual: bool = False) -> WebhookAttempt | None:
    """One attempt of the delivery, if it is due and this call claims it; None otherwise (sent
    already, not yet due, claimed by another worker, gone)."""
    claimed = _claim(delivery_id)
    if claimed is None:
        return None
    delivery, number = claimed
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        WebhookDelivery.objects.filter(
            id=delivery.id, status=WebhookDelivery.Status.PENDING, attempt_count=number
        ).update(status=WebhookDelivery.Status.CANCELLED, next_attempt_at=None)
        logger.info("webhook.cancelled delivery=%s endpoint=%s: endpoint disabled", delivery.id, endpoint.id)
        return None
    started = timezone.now()
    outcome = _send(delivery, endpoint, started)
    attempt, follow_up = _record(delivery, endpoint, number, started, outcome, manual=manual)
    if follow_up is not None:
        _send_tasks([str(delivery.id)], manual=False, countdown=follow_up)
    return attempt


def _claim(delivery_id: str | uuid.UUID) -> tuple[WebhookDelivery, int] | None:
    now = timezone.now()
    delivery = (
        WebhookDelivery.objects.select_related("endpoint")
        .filter(id=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .first()
    )
    if delivery is None:
        return None
    number = delivery.attempt_count + 1
    claimed = WebhookDelivery.objects.filter(
        id=delivery_id,
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at__lte=now,
        attempt_count=delivery.attempt_count,
    ).update(attempt_count=number, next_attempt_at=now + timedelta(seconds=LEASE_SECONDS))
    if claimed != 1:
        return None  # another worker took this attempt between the read and the update
    delivery.attempt_count = number
    return delivery, number


def _send(delivery: WebhookDelivery, endpoint: WebhookEndpoint, started: datetime) -> Outcome:
    secrets = [s.secret for s in endpoint.secrets.all() if s.expires_at is None or s.expires_at > started]
    message = WebhookMessage.from_json(delivery.message)
    try:
        rendered = render(
            message,
            format=endpoint.format,
            webhook_id=delivery.webhook_id,
            secrets=secrets,
            routing_key=endpoint.routing_key,
            timestamp=started,
        )
    except Exception as exc:  # noqa: BLE001 - a message that cannot be rendered is that attempt's error
        logger.exception("webhook.render_failed delivery=%s format=%s", delivery.id, endpoint.format)
        return Outcome(False, None, f"could not render: {type(exc).__name__}: {exc}"[:500], 0.0, "", None)
    timeout = settings.VETO_WEBHOOK_TIMEOUT_SECONDS
    if endpoint.format == WebhookEndpoint.Format.SLACK and endpoint.slack_bot_token and endpoint.slack_channel:
        return _post_to_slack(endpoint, message)
    if endpoint.url.split(":", 1)[0].lower() in SYSLOG_SCHEMES:
        answer = transport.send_syslog(
            endpoint.url, message=_syslog_message(rendered.body, message), timeout=timeout
        )
        return Outcome(not answer.error, None, answer.error, answer.latency_ms, "", None)
    answer = transport.post(endpoint.url, body=rendered.body, headers=rendered.headers, timeout=timeout)
    code = answer.status_code
    error = answer.error or ("" if code is not None and 200 <= code < 300 else f"HTTP {code}")
    return Outcome(
        delivered=code is not None and 200 <= code < 300,
        status_code=code,
        error=error,
        latency_ms=answer.latency_ms,
        snippet=answer.body[:RESPONSE_SNIPPET_MAX],
        retry_after=parse_retry_after(_header(answer.headers, "retry-after"), now=timezone.now()),
    )


def _post_to_slack(endpoint: WebhookEndpoint, message: WebhookMessage) -> Outcome:
    """chat.postMessage with the endpoint's bot token (the Slack API base is a setting, not a
    team's URL, so no SSRF check); a message with buttons is remembered so that they can be
    replaced once its approval is decided anywhere (webhooks.slack.retire)."""
    from webhooks.formats.slack import build_message
    from webhooks.slack.client import SlackApiError, slack_post_message

    started = time.perf_counter()
    try:
        channel, ts = slack_post_message(
            bot_token=endpoint.slack_bot_token, channel=endpoint.slack_channel, message=build_message(message)
        )
    except SlackApiError as exc:
        return Outcome(False, None, str(exc)[:500], _ms(started), "", None)
    approval = message.approval
    if message.event == WebhookEvent.REQUIRE_APPROVAL and approval is not None and ts:
        SlackMessage.objects.get_or_create(
            endpoint=endpoint, channel=channel, ts=ts, defaults={"approval_id": uuid.UUID(approval.approval_id)}
        )
    return Outcome(True, None, "", _ms(started), f"chat.postMessage ok: {channel} {ts}", None)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _syslog_message(cef_line: bytes, message: WebhookMessage) -> bytes:
    from webhooks.formats import syslog

    return syslog.message(cef_line.decode(), message=message)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _record(
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
    number: int,
    started: datetime,
    outcome: Outcome,
    *,
    manual: bool,
) -> tuple[WebhookAttempt, float | None]:
    """The attempt's row and what follows from it, in one transaction; returns the attempt and,
    for a retry due soon, its countdown."""
    now = timezone.now()
    status = WebhookDelivery.Status.PENDING
    next_at: datetime | None = None
    countdown: float | None = None
    disable: str = ""
    if outcome.delivered:
        status = WebhookDelivery.Status.DELIVERED
    elif outcome.status_code == GONE_STATUS:
        status = WebhookDelivery.Status.FAILED
        disable = WebhookEndpoint.DisabledReason.GONE
    elif outcome.status_code in FINAL_STATUSES or manual:
        status = WebhookDelivery.Status.FAILED
    else:
        wait = retry_wait(number, retry_after=outcome.retry_after)
        if wait is None:
            status = WebhookDelivery.Status.FAILED
        else:
            next_at = now + timedelta(seconds=wait)
            countdown = wait if wait <= COUNTDOWN_MAX_SECONDS else None
    with transaction.atomic():
        attempt = WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=started,
            latency_ms=outcome.latency_ms,
            status_code=outcome.status_code,
            error=outcome.error[:500],
            response_snippet=outcome.snippet,
            next_attempt_at=next_at,
            manual=manual,
        )
        # Conditional on the claim: a re-send by hand that claimed a later attempt meanwhile
        # owns the row's state now.
        WebhookDelivery.objects.filter(id=delivery.id, attempt_count=number).update(
            status=status,
            next_attempt_at=next_at,
            delivered_at=now if outcome.delivered else None,
        )
        if outcome.delivered:
            # Only when it was failing as loaded at the claim: the common case costs no query (a
            # failure recorded meanwhile by another worker is cleared by the next success).
            if endpoint.failing_since is not None:
                WebhookEndpoint.objects.filter(id=endpoint.id).update(failing_since=None)
        else:
            WebhookEndpoint.objects.filter(id=endpoint.id, failing_since__isnull=True).update(
                failing_since=started
            )
            failing_since = (
                WebhookEndpoint.objects.filter(id=endpoint.id).values_list("failing_since", flat=True).first()
            )
            window = timedelta(seconds=settings.VETO_WEBHOOK_FAILURE_WINDOW_SECONDS)
            if not disable and failing_since is not None and now - failing_since >= window:
                disable = WebhookEndpoint.DisabledReason.FAILING
        if disable:
            endpoint_disable(endpoint=endpoint, reason=disable)
    logger.info(
        "webhook.attempt delivery=%s endpoint=%s number=%d status=%s code=%s next=%s",
        delivery.id,
        endpoint.id,
        number,
        status,
        outcome.status_code,
        next_at.isoformat() if next_at else "-",
    )
    return attempt, countdown


def endpoint_disable(*, endpoint: WebhookEndpoint, reason: str) -> bool:
    """Disable a failing endpoint (``reason`` gone or failing) once: cancel its pending
    deliveries and append ``webhook.failed`` to the team's trail (announced to the team's other
    endpoints and shown to its admins). False when it was disabled already."""
    with transaction.atomic():
        changed = WebhookEndpoint.objects.filter(id=endpoint.id, enabled=True).update(
            enabled=False, disabled_reason=reason
        )
        if changed != 1:
            return False
        WebhookDelivery.objects.filter(endpoint_id=endpoint.id, status=WebhookDelivery.Status.PENDING).update(
            status=WebhookDelivery.Status.CANCELLED, next_attempt_at=None
        )
        audit_event_append(
            team_id=endpoint.team_id,
            kind=AuditEvent.Kind.WEBHOOK_FAILED,
            actor_name=TRAIL_ACTOR,
            details={
                "endpoint_id": str(endpoint.id),
                "endpoint_name": endpoint.name,
                "reason": reason,
                "url_host": _host(endpoint.url),
            },
        )
    logger.warning(
        "webhook.endpoint_disabled endpoint=%s team=%s reason=%s", endpoint.id, endpoint.team_id, reason
    )
    return True


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""
