"""Sending deliveries: a task's attempts at once, the retry schedule, an endpoint's health, ``enqueue``.

A delivery is a row that is due when ``next_attempt_at`` has passed. A batch's attempts are
claimed by one conditional UPDATE (still pending, still due; on PostgreSQL of the rows it could
lock, skipping those another worker holds) that counts each attempt and pushes its
``next_attempt_at`` a lease ahead: two workers (a task and the sweep, a task run twice) never
send the same attempt, and a worker that dies mid-send leaves a delivery that is due again once
the lease is over. The batch's requests go out at once; the answers are recorded (one
``WebhookAttempt`` each) together with what follows from them, in one transaction, each meaning
what it would mean alone (below).

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
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import reduce
from operator import or_
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, DateTimeField, Q, Value, When
from django.utils import timezone

from audit.models import AuditEvent
from audit.trail import audit_event_append
from common import metrics
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
# mid-send) is ``lease_seconds()``: at least this, and always well over the longest a task's
# sends can take.
LEASE_SECONDS_MIN = 60.0
# A retry this soon also gets a task with a countdown, so it is not late by up to one sweep
# period; later ones are left to the sweep (a long countdown sits in the broker for hours).
COUNTDOWN_MAX_SECONDS = 60.0
# Deliveries per task: a task's claim, read and record are a few statements whatever its size,
# and each task costs the sender a broker message, so bigger batches are cheaper per delivery.
# Measured (benchmarks/webhook_deliveries.py, writer burst of 5,000, 2 workers, interleaved):
# 10 -> 422-528/s, 25 -> 676-733/s, 50 -> 931-1,028/s, 100 -> 893-910/s.
TASK_BATCH = 50
# A batch's HTTP and syslog sends go out at once on this many threads. 25 and 10 drained the
# same (the threads mostly wait); 25 halves how long an endpoint that times out holds a task.
SEND_THREADS = 25
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
        producer.connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0.2, interval_max=0.2
        )
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


def lease_seconds() -> float:
    """How long a claimed attempt is held: a task's sends take at most ceil(TASK_BATCH /
    SEND_THREADS) rounds of the request timeout (2 x 10 s by default), and the lease is that
    plus half a minute, never under LEASE_SECONDS_MIN; so a worker still sending is never
    overtaken by a second claim of the same attempt however the timeout is set."""
    rounds = -(-TASK_BATCH // SEND_THREADS)
    return max(LEASE_SECONDS_MIN, rounds * settings.VETO_WEBHOOK_TIMEOUT_SECONDS + 30.0)


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
    attempts = attempt_many([delivery_id], manual=manual)
    return attempts[0] if attempts else None


def attempt_many(delivery_ids: Iterable[str | uuid.UUID], *, manual: bool = False) -> list[WebhookAttempt]:
    """One attempt of each of these deliveries that is due and that this call claims (what a
    ``deliver_many`` task does), batched: one claim statement for all of them, the endpoints and
    their secrets read with them, the requests sent at once (up to ``SEND_THREADS``), and every
    answer recorded in one transaction. Each attempt means what it means one at a time (the
    module docstring); returns the attempts made, in the order of the ids."""
    claimed = _claim_many(delivery_ids)
    live = [(row, number) for row, number in claimed if row.endpoint.enabled]
    cancelled = [(row, number) for row, number in claimed if not row.endpoint.enabled]
    if cancelled:
        # Conditional on the claim, as a record is: a later claim owns the row's state.
        WebhookDelivery.objects.filter(
            _claimed_rows(cancelled), status=WebhookDelivery.Status.PENDING
        ).update(status=WebhookDelivery.Status.CANCELLED, next_attempt_at=None)
        for row, _ in cancelled:
            logger.info(
                "webhook.cancelled delivery=%s endpoint=%s: endpoint disabled", row.id, row.endpoint_id
            )
    if not live:
        return []
    sent = _send_all(live)
    attempts, follow_ups = _record_many(live, sent, manual=manual)
    for delivery_id, countdown in follow_ups:
        _send_tasks([delivery_id], manual=False, countdown=countdown)
    return attempts


def _claim(delivery_id: str | uuid.UUID) -> tuple[WebhookDelivery, int] | None:
    claimed = _claim_many([delivery_id])
    return claimed[0] if claimed else None


def _claim_many(delivery_ids: Iterable[str | uuid.UUID]) -> list[tuple[WebhookDelivery, int]]:
    """Claim the next attempt of each due delivery among the ids: one UPDATE (still pending,
    still due) that counts the attempt and pushes ``next_attempt_at`` a lease ahead, returning
    the rows it changed, then one read of those rows with their endpoints and secrets. Two
    workers never claim the same attempt: on PostgreSQL the rows are locked first, skipping
    those another worker holds (no deadlock between two batches over the same ids, and a
    locked row is one being claimed or recorded); SQLite runs one writer at a time."""
    ids = list(dict.fromkeys(uuid.UUID(str(delivery_id)) for delivery_id in delivery_ids))
    if not ids:
        return []
    now = timezone.now()
    numbers = _claim_rows(ids, now=now, lease_until=now + timedelta(seconds=lease_seconds()))
    if not numbers:
        return []
    rows = {
        row.id: row
        for row in WebhookDelivery.objects.select_related("endpoint")
        .prefetch_related("endpoint__secrets")
        .filter(id__in=list(numbers))
    }
    claimed = []
    for delivery_id in ids:
        row = rows.get(delivery_id)
        if row is not None and delivery_id in numbers:
            row.attempt_count = numbers[delivery_id]
            claimed.append((row, numbers[delivery_id]))
    return claimed


def _claim_rows(ids: list[uuid.UUID], *, now: datetime, lease_until: datetime) -> dict[uuid.UUID, int]:
    meta = WebhookDelivery._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    columns = {field.name: str(field.column) for field in meta.concrete_fields}
    pk, status, due, count = (
        quote(columns[name]) for name in ("id", "status", "next_attempt_at", "attempt_count")
    )
    id_params = [WebhookDelivery._meta.get_field("id").get_db_prep_value(delivery_id, connection) for delivery_id in ids]
    marks = ", ".join(["%s"] * len(ids))
    adapt = connection.ops.adapt_datetimefield_value
    pending = WebhookDelivery.Status.PENDING.value
    if connection.vendor == "postgresql":
        sql = (
            f"UPDATE {table} SET {count} = {table}.{count} + 1, {due} = %s"
            f" FROM (SELECT {pk} FROM {table} WHERE {pk} IN ({marks}) AND {status} = %s AND {due} <= %s"
            f" ORDER BY {pk} FOR UPDATE SKIP LOCKED) AS claimable"
            f" WHERE {table}.{pk} = claimable.{pk} RETURNING {table}.{pk}, {table}.{count}"
        )
        params = [adapt(lease_until), *id_params, pending, adapt(now)]
    else:
        sql = (
            f"UPDATE {table} SET {count} = {count} + 1, {due} = %s"
            f" WHERE {pk} IN ({marks}) AND {status} = %s AND {due} <= %s RETURNING {pk}, {count}"
        )
        params = [adapt(lease_until), *id_params, pending, adapt(now)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        returned = cursor.fetchall()
    return {uuid.UUID(str(value)): int(number) for value, number in returned}


def _claimed_rows(claimed: Iterable[tuple[WebhookDelivery, int]]) -> Q:
    """The rows still at the attempt each of these claimed (a re-send by hand that claimed a
    later attempt meanwhile owns the row's state then)."""
    return reduce(or_, (Q(id=row.id, attempt_count=number) for row, number in claimed))


def _send_all(claimed: list[tuple[WebhookDelivery, int]]) -> list[tuple[datetime, Outcome]]:
    """Send each claimed attempt; the HTTP and syslog sends of a batch at once on the pool's
    threads (each to its checked address, transport's pooled clients), the Slack API posts here
    (they write the message's row on this thread's connection). Returns (started, outcome) in
    the order given."""
    started_at: list[datetime] = []
    results: list[Outcome | _SlackPost | Future[Outcome] | Callable[[], Outcome]] = []
    for row, _ in claimed:
        started = timezone.now()
        started_at.append(started)
        results.append(_prepare(row, row.endpoint, started))
    calls = [index for index, result in enumerate(results) if callable(result)]
    if len(calls) > 1:
        pool = _send_pool()
        for index in calls:
            results[index] = pool.submit(_guarded, results[index])  # type: ignore[arg-type]
    elif calls:
        results[calls[0]] = _guarded(results[calls[0]])  # type: ignore[arg-type]
    for index, (row, _) in enumerate(claimed):
        result = results[index]
        if isinstance(result, _SlackPost):
            results[index] = _post_to_slack(row.endpoint, result.message)
    return [
        (started, result.result() if isinstance(result, Future) else result)  # type: ignore[misc]
        for started, result in zip(started_at, results, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class _SlackPost:
    message: WebhookMessage


def _prepare(
    delivery: WebhookDelivery, endpoint: WebhookEndpoint, started: datetime
) -> Outcome | _SlackPost | Callable[[], Outcome]:
    """The attempt's send to make (a call for the pool), or its outcome when there is nothing
    to send (a message that cannot be rendered), or a Slack API post."""
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
    if (
        endpoint.format == WebhookEndpoint.Format.SLACK
        and endpoint.slack_bot_token
        and endpoint.slack_channel
    ):
        return _SlackPost(message)
    url = endpoint.url
    if url.split(":", 1)[0].lower() in SYSLOG_SCHEMES:
        line = _syslog_message(rendered.body, message)

        def send_syslog() -> Outcome:
            answer = transport.send_syslog(url, message=line, timeout=timeout)
            return Outcome(not answer.error, None, answer.error, answer.latency_ms, "", None)

        return send_syslog

    def post() -> Outcome:
        answer = transport.post(url, body=rendered.body, headers=rendered.headers, timeout=timeout)
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

    return post


def _guarded(send: Callable[[], Outcome]) -> Outcome:
    """A send whose unexpected error (transport catches the network's) is that attempt's error,
    not the batch's: the others' answers are still recorded."""
    started = time.perf_counter()
    try:
        return send()
    except Exception as exc:  # noqa: BLE001 - recorded as the attempt's error and retried
        logger.exception("webhook.send_failed")
        return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500], _ms(started), "", None)


_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _send_pool() -> ThreadPoolExecutor:
    """The process's send threads, made on first use (and again in a forked child: a prefork
    worker must not inherit its parent's threads)."""
    global _pool  # noqa: PLW0603 - one pool per process
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (
                os.getpid(),
                ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="webhook-send"),
            )
        return _pool[1]


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
            endpoint=endpoint,
            channel=channel,
            ts=ts,
            defaults={"approval_id": uuid.UUID(approval.approval_id)},
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


def _record_many(
    claimed: list[tuple[WebhookDelivery, int]], sent: list[tuple[datetime, Outcome]], *, manual: bool
) -> tuple[list[WebhookAttempt], list[tuple[str, float]]]:
    """The attempts' rows and what follows from them, in one transaction: one INSERT of the
    attempts, one UPDATE per kind of outcome (delivered, failed, retried), the endpoints' health
    as if the answers had come one after another in the batch's order. Returns the attempts and,
    for each retry due soon, (delivery id, countdown)."""
    now = timezone.now()
    attempts: list[WebhookAttempt] = []
    follow_ups: list[tuple[str, float]] = []
    groups: dict[str, list[tuple[WebhookDelivery, int, datetime | None]]] = {}
    gone: set[uuid.UUID] = set()
    for (row, number), (started, outcome) in zip(claimed, sent, strict=True):
        status = WebhookDelivery.Status.PENDING
        next_at: datetime | None = None
        if outcome.delivered:
            status = WebhookDelivery.Status.DELIVERED
        elif outcome.status_code == GONE_STATUS:
            status = WebhookDelivery.Status.FAILED
            gone.add(row.id)
        elif outcome.status_code in FINAL_STATUSES or manual:
            status = WebhookDelivery.Status.FAILED
        else:
            wait = retry_wait(number, retry_after=outcome.retry_after)
            if wait is None:
                status = WebhookDelivery.Status.FAILED
            else:
                next_at = now + timedelta(seconds=wait)
                if wait <= COUNTDOWN_MAX_SECONDS:
                    follow_ups.append((str(row.id), wait))
        groups.setdefault(status, []).append((row, number, next_at))
        attempts.append(
            WebhookAttempt(
                delivery=row,
                number=number,
                started_at=started,
                latency_ms=outcome.latency_ms,
                status_code=outcome.status_code,
                error=outcome.error[:500],
                response_snippet=outcome.snippet,
                next_attempt_at=next_at,
                manual=manual,
            )
        )
        logger.info(
            "webhook.attempt delivery=%s endpoint=%s number=%d status=%s code=%s next=%s",
            row.id,
            row.endpoint_id,
            number,
            status,
            outcome.status_code,
            next_at.isoformat() if next_at else "-",
        )
    with transaction.atomic():
        WebhookAttempt.objects.bulk_create(attempts)
        for new_status, rows in groups.items():
            next_attempt_at: Any = None
            if any(next_at is not None for _, _, next_at in rows):
                next_attempt_at = Case(
                    *(When(id=row.id, then=Value(next_at)) for row, _, next_at in rows),
                    default=Value(None),
                    output_field=DateTimeField(),
                )
            # Conditional on the claim: a re-send by hand that claimed a later attempt
            # meanwhile owns the row's state now.
            WebhookDelivery.objects.filter(_claimed_rows((row, number) for row, number, _ in rows)).update(
                status=new_status,
                next_attempt_at=next_attempt_at,
                delivered_at=now if new_status == WebhookDelivery.Status.DELIVERED else None,
            )
        by_endpoint: dict[uuid.UUID, list[tuple[datetime, bool, bool]]] = {}
        endpoints: dict[uuid.UUID, WebhookEndpoint] = {}
        for (row, _), (started, outcome) in zip(claimed, sent, strict=True):
            endpoints.setdefault(row.endpoint_id, row.endpoint)
            by_endpoint.setdefault(row.endpoint_id, []).append((started, outcome.delivered, row.id in gone))
        for endpoint_id, answers in by_endpoint.items():
            endpoint = endpoints[endpoint_id]
            disable = _endpoint_health(endpoint, answers, now=now)
            if disable:
                endpoint_disable(endpoint=endpoint, reason=disable)
    # Counted once recorded, in this worker's own metrics files (README, "Metrics").
    delivered = sum(1 for _, outcome in sent if outcome.delivered)
    metrics.WEBHOOK_ATTEMPTS["delivered"].inc(delivered)
    metrics.WEBHOOK_ATTEMPTS["failed"].inc(len(sent) - delivered)
    metrics.WEBHOOK_DELIVERIES_FAILED.inc(len(groups.get(WebhookDelivery.Status.FAILED, ())))
    return attempts, follow_ups


def _endpoint_health(
    endpoint: WebhookEndpoint, answers: list[tuple[datetime, bool, bool]], *, now: datetime
) -> str:
    """Record what the batch's answers (started, delivered, gone), in order, say of the
    endpoint's health, and return the reason to disable it ('' for none). Its first failure
    since a success starts ``failing_since``; a success clears it; a failure when it is the
    window old disables; a success on an endpoint that was not failing costs no query."""
    window = timedelta(seconds=settings.VETO_WEBHOOK_FAILURE_WINDOW_SECONDS)
    disable = ""
    failing_since = endpoint.failing_since  # as loaded with the claim
    succeeded = False
    first_failure: datetime | None = None
    for started, delivered, gone in answers:
        if delivered:
            succeeded, failing_since = True, None
            continue
        if failing_since is None:
            failing_since = started
        if first_failure is None:
            first_failure = started
        if gone:
            disable = disable or WebhookEndpoint.DisabledReason.GONE
        elif not disable and now - failing_since >= window:
            disable = WebhookEndpoint.DisabledReason.FAILING
    if first_failure is None:
        if endpoint.failing_since is not None:
            # Only when it was failing as loaded: a failure recorded meanwhile by another worker
            # is cleared by the next success.
            WebhookEndpoint.objects.filter(id=endpoint.id).update(failing_since=None)
        return disable
    if succeeded:
        # A success in the batch: the endpoint's clock is what the answers after it say.
        if failing_since != endpoint.failing_since:
            WebhookEndpoint.objects.filter(id=endpoint.id).update(failing_since=failing_since)
        return disable
    # Failures only: start the clock unless another worker did, and judge by the stored one.
    WebhookEndpoint.objects.filter(id=endpoint.id, failing_since__isnull=True).update(
        failing_since=first_failure
    )
    stored = WebhookEndpoint.objects.filter(id=endpoint.id).values_list("failing_since", flat=True).first()
    if not disable and stored is not None and now - stored >= window:
        disable = WebhookEndpoint.DisabledReason.FAILING
    return disable


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
