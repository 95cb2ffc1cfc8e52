"""Writes of a team's webhook endpoints: create, update (enable, disable), delete, rotate the
signing secret, send a test, re-send a delivery.

Every change is one service, one transaction, one entry in the team's governance trail (kind
``team.changed``, ``change`` = ``webhook.created`` / ``webhook.updated`` / ``webhook.enabled`` /
``webhook.disabled`` / ``webhook.deleted`` / ``webhook.secret_rotated`` / ``webhook.test_sent`` /
``webhook.resent``): webhooks are the team's settings, as its members and options are. The entry
names the endpoint and its URL's host, never the whole URL, a routing key or a secret (a Slack
incoming-webhook URL is itself a credential, and the trail is kept forever).

Who may: a team admin or staff (the settings page), an API key of the team holding
``webhooks:manage`` (a personal key holds it only while its person is an admin), or a trusted
process. Refusals and bad input are ``ApplicationError``s; a value is checked before anything
is written, so a refusal writes nothing.

Sending is wh-engine's (``webhooks.delivery.enqueue``, called after commit); the SSRF guard is
``webhooks.ssrf.check_url``, asked at create and update.
"""

from __future__ import annotations

import base64
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent, ChainStream
from audit.selectors import chain_heads_of_team
from audit.trail import audit_event_append
from common.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from tenancy.actor import Actor
from tenancy.models import ApiKey, Team
from tenancy.scopes import require_scopes
from tenancy.selectors import user_is_team_admin
from webhooks.delivery import enqueue
from webhooks.messages import (
    ApprovalFacts,
    DecisionFacts,
    PolicyFacts,
    WebhookFailureFacts,
    WebhookMessage,
)
from webhooks.models import (
    SEVERITY_ORDER,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookSecret,
)

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
# Standard Webhooks allows 24-64 bytes; 32 is what its reference libraries generate.
SECRET_BYTES = 32
# A rotation keeps the old secret signing this long by default, and at most this long.
ROTATION_OVERLAP_DEFAULT = timedelta(hours=24)
ROTATION_OVERLAP_MAX = timedelta(days=7)
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
NAME_MAX = WebhookEndpoint._meta.get_field("name").max_length or 200
URL_MAX = WebhookEndpoint._meta.get_field("url").max_length or 2000
ROUTING_KEY_MAX = WebhookEndpoint._meta.get_field("routing_key").max_length or 64
HTTP_SCHEMES = ("http", "https")
SYSLOG_SCHEMES = ("syslog+udp", "syslog+tcp")
# The fields an update may change (the API's PATCH, the page's edit form).
SLACK_SECRET_MAX = WebhookEndpoint._meta.get_field("slack_signing_secret").max_length or 200
SLACK_TOKEN_MAX = WebhookEndpoint._meta.get_field("slack_bot_token").max_length or 200
SLACK_CHANNEL_MAX = WebhookEndpoint._meta.get_field("slack_channel").max_length or 100
# Fields only one format takes: refused for the others, and cleared when the format changes.
FORMAT_FIELDS = {
    "routing_key": WebhookEndpoint.Format.PAGERDUTY,
    "slack_signing_secret": WebhookEndpoint.Format.SLACK,
    "slack_bot_token": WebhookEndpoint.Format.SLACK,
    "slack_channel": WebhookEndpoint.Format.SLACK,
}
# Credentials: written, never read back (the API says only whether each is set).
WRITE_ONLY = ("slack_signing_secret", "slack_bot_token")
EDITABLE = ("name", "url", "format", "events", "min_severity", "enabled", *FORMAT_FIELDS)
MANAGE_SCOPE = ApiKey.Scope.WEBHOOKS_MANAGE


class WebhookManagerRequired(PermissionDenied):
    code = "webhook_manager_required"


class InvalidWebhook(InvalidInput):
    """400 naming the field (``details.field``) and why."""

    def __init__(self, field: str, reason: str, **details: Any) -> None:
        super().__init__(f"{field}: {reason}", details={"field": field, "reason": reason, **details})


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once: never readable again


@dataclass(frozen=True, slots=True)
class RotatedSecret:
    endpoint: WebhookEndpoint
    secret: str  # the new one, shown once
    old_expires_at: datetime | None  # when the previous secret stops signing (None: there was none)


def secret_generate() -> str:
    """A new signing secret: ``whsec_`` + base64 of SECRET_BYTES random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


# --- who may ---------------------------------------------------------------------------------


def ensure_webhook_manager(*, team: Team, actor: Actor) -> None:
    """Refuse anyone but the team's admins and staff, the team's keys with ``webhooks:manage``,
    and trusted processes."""
    if actor.process_name:
        return
    if actor.api_key is not None:
        if actor.api_key.team_id != team.id:
            raise NotFound("webhook endpoint not found")
        require_scopes(actor.api_key, (MANAGE_SCOPE,))
        return
    if actor.user is None or not user_is_team_admin(user=actor.user, team_id=team.id):
        raise WebhookManagerRequired(f"only an admin of {team.slug} may manage its webhooks")


def may_manage_webhooks(*, team: Team, actor: Actor) -> bool:
    """``ensure_webhook_manager`` as a question (what a page shows depends on it)."""
    try:
        ensure_webhook_manager(team=team, actor=actor)
    except (PermissionDenied, NotFound):
        return False
    return True


# --- validation ------------------------------------------------------------------------------


def _check_url(url: str, *, format: str) -> None:
    """What the format allows (syslog for CEF only), then the SSRF guard, which also checks the
    URL's form (a host, a port for syslog, no credentials) and where its host resolves to."""
    if not url:
        raise InvalidWebhook("url", "required")
    if len(url) > URL_MAX:
        raise InvalidWebhook("url", f"at most {URL_MAX} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise InvalidWebhook("url", "must not contain spaces or control characters")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in SYSLOG_SCHEMES:
        if format != WebhookEndpoint.Format.CEF:
            raise InvalidWebhook("url", f"{scheme}:// is for the cef format only; use https://")
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise InvalidWebhook("url", f"not a valid URL ({exc})") from exc
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise InvalidWebhook("url", f"{scheme}:// takes a host and a port only ({scheme}://host:514)")
    elif scheme not in HTTP_SCHEMES:
        allowed = (
            "https://, http://, syslog+udp:// or syslog+tcp://" if format == "cef" else "https:// or http://"
        )
        raise InvalidWebhook("url", f"the URL must start with {allowed}")
    refusal = _ssrf_refusal(url)
    if refusal:
        raise InvalidWebhook("url", refusal)


def _ssrf_refusal(url: str) -> str | None:
    """Why the SSRF guard (wh-engine's ``webhooks.ssrf.check_url``) refuses ``url``; None when it
    lets it through."""
    try:
        from webhooks.ssrf import WebhookHostUnresolved, check_url
    except ImportError:  # the engine's guard is not in this checkout yet; sending checks again
        logger.warning("webhook.ssrf_guard_missing")
        return None
    try:
        check_url(url)
    except WebhookHostUnresolved:
        # A name that does not resolve now reaches nothing, private or not: accepted (its DNS
        # may not be set up yet, or this server may resolve it only later). Every attempt
        # resolves and checks again, and a test send shows the failure in the log.
        return None
    except InvalidInput as exc:
        return exc.message
    return None


def _check_events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events:
        raise InvalidWebhook("events", "give at least one event", allowed=list(WebhookEvent.values))
    unknown = [e for e in events if not isinstance(e, str) or e not in WebhookEvent.values]
    if unknown:
        raise InvalidWebhook(
            "events", f"unknown event(s): {', '.join(map(str, unknown))}", allowed=list(WebhookEvent.values)
        )
    # The order of WebhookEvent, once each.
    return [e for e in WebhookEvent.values if e in events]


def _cleaned(values: dict[str, Any]) -> dict[str, Any]:
    """The endpoint's fields, checked together (the URL's scheme depends on the format, a
    PagerDuty endpoint needs its routing key); raises InvalidWebhook on the first problem."""
    name = str(values.get("name") or "").strip()
    if not name:
        raise InvalidWebhook("name", "required")
    if len(name) > NAME_MAX:
        raise InvalidWebhook("name", f"at most {NAME_MAX} characters")
    format = values.get("format") or WebhookEndpoint.Format.GENERIC
    if format not in WebhookEndpoint.Format.values:
        raise InvalidWebhook("format", f"one of {', '.join(WebhookEndpoint.Format.values)}")
    severity = values.get("min_severity") or WebhookEndpoint.Severity.INFO
    if severity not in SEVERITY_ORDER:
        raise InvalidWebhook("min_severity", f"one of {', '.join(SEVERITY_ORDER)}")
    owned = {field: str(values.get(field) or "").strip() for field in FORMAT_FIELDS}
    for field, owner in FORMAT_FIELDS.items():
        if owned[field] and format != owner:
            raise InvalidWebhook(field, f"only the {owner} format takes {field}")
    limits = {
        "routing_key": ROUTING_KEY_MAX,
        "slack_signing_secret": SLACK_SECRET_MAX,
        "slack_bot_token": SLACK_TOKEN_MAX,
        "slack_channel": SLACK_CHANNEL_MAX,
    }
    for field, limit in limits.items():
        if len(owned[field]) > limit:
            raise InvalidWebhook(field, f"at most {limit} characters")
        if any(ch.isspace() for ch in owned[field]):
            raise InvalidWebhook(field, "must not contain spaces")
    if format == WebhookEndpoint.Format.PAGERDUTY and not owned["routing_key"]:
        raise InvalidWebhook("routing_key", "required for the pagerduty format (its integration key)")
    if owned["slack_bot_token"] and not owned["slack_bot_token"].startswith("xox"):
        raise InvalidWebhook("slack_bot_token", "a Slack bot token starts with xoxb-")
    url = str(values.get("url") or "").strip()
    if not url and format == WebhookEndpoint.Format.PAGERDUTY:
        url = PAGERDUTY_EVENTS_URL
    posts_by_api = bool(owned["slack_bot_token"] and owned["slack_channel"])
    if url or not (format == WebhookEndpoint.Format.SLACK and posts_by_api):
        # A Slack endpoint with a bot token and a channel posts with chat.postMessage: no URL.
        try:
            _check_url(url, format=format)
        except InvalidWebhook as exc:
            if not url and format == WebhookEndpoint.Format.SLACK:
                raise InvalidWebhook(
                    "url", "required (an incoming webhook), unless a bot token and a channel are given"
                ) from exc
            raise
    return {
        **owned,
        "name": name,
        "url": url,
        "format": format,
        "events": _check_events(values.get("events")),
        "min_severity": severity,
        "enabled": bool(values.get("enabled", True)),
    }


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _trail(*, endpoint: WebhookEndpoint, actor: Actor, change: str, **details: Any) -> AuditEvent:
    """Inside the change's transaction: its entry in the team's governance trail."""
    record = {
        "change": change,
        "user_id": None,
        "username": None,
        "webhook_id": str(endpoint.id),
        "webhook_name": endpoint.name,
        "format": endpoint.format,
        "host": _host_of(endpoint.url),
        **details,
    }
    event = audit_event_append(
        team_id=endpoint.team_id,
        kind=AuditEvent.Kind.TEAM_CHANGED,
        actor_name=actor.name or "unknown",
        details=record,
        remote_addr=actor.remote_addr,
    )
    logger.info("%s team=%s webhook=%s by=%s", change, endpoint.team_id, endpoint.id, actor.name)
    return event


def _locked(endpoint: WebhookEndpoint, actor: Actor) -> WebhookEndpoint:
    """The endpoint's row, locked for the rest of the transaction; gone is a 404."""
    locked = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
    if locked is None:
        raise NotFound("webhook endpoint not found")
    ensure_webhook_manager(team=locked.team, actor=actor)
    return locked


class WebhookDisabled(Conflict):
    code = "webhook_disabled"


class DeliveryInFlight(Conflict):
    code = "delivery_in_flight"


def _ensure_enabled(endpoint: WebhookEndpoint, *, doing: str) -> None:
    if not endpoint.enabled:
        raise WebhookDisabled(f"the endpoint {endpoint.name} is disabled: enable it to {doing}")


# --- endpoints -------------------------------------------------------------------------------


def webhook_endpoint_create(*, team: Team, actor: Actor, values: dict[str, Any]) -> CreatedEndpoint:
    """A new endpoint with its first signing secret (returned once). Its cursors start at the
    team's streams' heads: it receives what happens from now on, not the team's past."""
    ensure_webhook_manager(team=team, actor=actor)
    cleaned = _cleaned(values)
    secret = secret_generate()
    with transaction.atomic():
        heads = chain_heads_of_team(team_id=team.id)
        endpoint = WebhookEndpoint.objects.create(
            team=team,
            created_by=actor.user,
            decisions_cursor=heads[ChainStream.DECISIONS],
            events_cursor=heads[ChainStream.EVENTS],
            **cleaned,
        )
        WebhookSecret.objects.create(endpoint=endpoint, secret=secret)
        _trail(endpoint=endpoint, actor=actor, change="webhook.created", events=cleaned["events"])
    return CreatedEndpoint(endpoint=endpoint, secret=secret)


def webhook_endpoint_update(
    *, endpoint: WebhookEndpoint, actor: Actor, changes: dict[str, Any]
) -> WebhookEndpoint:
    """Change some of EDITABLE (the others keep their values). Turning ``enabled`` on clears why
    it was disabled and its failure clock; one trail entry per update, naming what changed."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise InvalidWebhook(unknown[0], "not a field that can be changed", editable=list(EDITABLE))
    ensure_webhook_manager(team=endpoint.team, actor=actor)
    with transaction.atomic():
        locked = _locked(endpoint, actor)
        current = {name: getattr(locked, name) for name in EDITABLE}
        merged = {**current, **changes}
        if "format" in changes and changes["format"] != current["format"]:
            for name, owner in FORMAT_FIELDS.items():
                if name not in changes and changes["format"] != owner:
                    merged[name] = ""  # a routing key is PagerDuty's alone, the Slack fields Slack's
        if "url" in changes and not changes["url"]:
            merged["url"] = ""  # pagerduty: back to the default
        cleaned = _cleaned(merged)
        changed = sorted(name for name in EDITABLE if cleaned[name] != current[name])
        if not changed:
            return locked
        for name in changed:
            setattr(locked, name, cleaned[name])
        skipped: dict[str, list[int]] = {}
        if "enabled" in changed:
            # By hand: whatever disabled it is over (enabled), or it is a person's choice now.
            locked.disabled_reason = WebhookEndpoint.DisabledReason.NONE
            locked.failing_since = None
            if locked.enabled:
                skipped = _restart_at_the_present(locked)
        locked.save()
        if changed == ["enabled"]:
            change = "webhook.enabled" if locked.enabled else "webhook.disabled"
        else:
            change = "webhook.updated"
        # The changed fields' names; for the URL only its host (see the module's docstring).
        details: dict[str, Any] = {"fields": changed}
        if skipped:
            details["skipped"] = skipped
        _trail(endpoint=locked, actor=actor, change=change, **details)
    return locked


def _restart_at_the_present(endpoint: WebhookEndpoint) -> dict[str, list[int]]:
    """An endpoint enabled again starts at the team's present, as a new one does: what happened
    while it was off (days, after the failure window) would otherwise arrive at once, stale
    denials and approvals long decided, all paging the receiver. The sequences it skips are
    returned for the trail entry, so nobody is left guessing what was not sent."""
    heads = chain_heads_of_team(team_id=endpoint.team_id)
    skipped = {}
    for stream, field in ((ChainStream.DECISIONS, "decisions_cursor"), (ChainStream.EVENTS, "events_cursor")):
        cursor = getattr(endpoint, field)
        if heads[stream] > cursor:
            skipped[str(stream)] = [cursor + 1, heads[stream]]
        setattr(endpoint, field, max(cursor, heads[stream]))
    return skipped


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: Actor) -> None:
    """Delete the endpoint with its secrets, deliveries and attempts (nothing more is sent)."""
    ensure_webhook_manager(team=endpoint.team, actor=actor)
    with transaction.atomic():
        locked = _locked(endpoint, actor)
        _trail(endpoint=locked, actor=actor, change="webhook.deleted")
        locked.delete()


def webhook_secret_rotate(
    *, endpoint: WebhookEndpoint, actor: Actor, overlap: timedelta = ROTATION_OVERLAP_DEFAULT
) -> RotatedSecret:
    """A new signing secret (returned once). The secrets live now keep signing until
    now + ``overlap`` (0: stop at once), so receivers can switch without losing a message; while
    both are live every delivery carries a signature by each."""
    if overlap < timedelta(0) or overlap > ROTATION_OVERLAP_MAX:
        raise InvalidWebhook(
            "overlap_seconds", f"between 0 and {int(ROTATION_OVERLAP_MAX.total_seconds())} seconds"
        )
    ensure_webhook_manager(team=endpoint.team, actor=actor)
    secret = secret_generate()
    with transaction.atomic():
        locked = _locked(endpoint, actor)
        now = timezone.now()
        until = now + overlap
        live = WebhookSecret.objects.filter(endpoint=locked).exclude(expires_at__lte=now)
        had_one = live.exists()
        # Secrets already ending sooner keep their end; the current one (and any ending later) ends then.
        live.filter(expires_at__isnull=True).update(expires_at=until)
        live.filter(expires_at__gt=until).update(expires_at=until)
        # What stopped signing is of no use to anyone: keep the table to the live secrets.
        WebhookSecret.objects.filter(endpoint=locked, expires_at__lte=now).delete()
        WebhookSecret.objects.create(endpoint=locked, secret=secret, created_at=now)
        _trail(
            endpoint=locked,
            actor=actor,
            change="webhook.secret_rotated",
            overlap_seconds=int(overlap.total_seconds()),
        )
    return RotatedSecret(endpoint=locked, secret=secret, old_expires_at=until if had_one else None)


# --- deliveries ------------------------------------------------------------------------------


def _test_message(endpoint: WebhookEndpoint, event: str, now: datetime) -> WebhookMessage:
    """A message of ``event``'s shape with made-up facts, marked ``test``: a receiver sees what
    a real one looks like and can tell it is not one."""
    team = endpoint.team
    severity = endpoint.min_severity
    summary = f"Test message from Veto Cloud to {endpoint.name}: nothing happened."
    facts: dict[str, Any] = {}
    if event in (WebhookEvent.DENY, WebhookEvent.REQUIRE_APPROVAL, WebhookEvent.BUDGET_EXCEEDED):
        decision = "deny" if event == WebhookEvent.BUDGET_EXCEEDED else str(event)
        facts["decision"] = DecisionFacts(
            decision_id="test",
            tool_name="example_tool",
            decision=decision,
            rule_id="example_rule",
            rule_name="Example rule",
            reason="A test message: no tool was called.",
        )
    elif event in (WebhookEvent.APPROVAL_RESOLVED, WebhookEvent.APPROVAL_EXPIRED):
        status = "approved" if event == WebhookEvent.APPROVAL_RESOLVED else "expired"
        facts["approval"] = ApprovalFacts(
            approval_id="test", status=status, tool_name="example_tool", rule_name="Example rule"
        )
    elif event == WebhookEvent.POLICY_PUBLISHED:
        facts["policy"] = PolicyFacts(version=0, published_by="test")
    else:
        facts["webhook"] = WebhookFailureFacts(
            endpoint_id=str(endpoint.id), endpoint_name=endpoint.name, reason="failing"
        )
    return WebhookMessage(
        event=event,
        severity=severity,
        occurred_at=now,
        team_slug=team.slug,
        team_name=team.name,
        summary=summary,
        test=True,
        **facts,
    )


def webhook_test_send(
    *, endpoint: WebhookEndpoint, actor: Actor, event: str | None = None
) -> WebhookDelivery:
    """A test delivery of ``event`` (default: the endpoint's first subscribed event), sent like
    any other (signed, retried, logged). Enabled endpoints only: the engine cancels what comes up
    for a disabled one, so the test would say nothing."""
    ensure_webhook_manager(team=endpoint.team, actor=actor)
    with transaction.atomic():
        locked = _locked(endpoint, actor)
        _ensure_enabled(locked, doing="send a test")
        chosen = event or (locked.events[0] if locked.events else WebhookEvent.DENY)
        if chosen not in WebhookEvent.values:
            raise InvalidWebhook("event", f"one of {', '.join(WebhookEvent.values)}")
        now = timezone.now()
        delivery = WebhookDelivery.objects.create(
            endpoint=locked,
            team_id=locked.team_id,
            event=chosen,
            source_key=f"test:{uuid.uuid4()}",
            severity=locked.min_severity,
            message=_test_message(locked, chosen, now).as_json(),
            next_attempt_at=now,
            created_at=now,
        )
        _trail(endpoint=locked, actor=actor, change="webhook.test_sent", delivery_id=str(delivery.id))
        enqueue([delivery.id])
    return delivery


def webhook_delivery_resend(*, delivery: WebhookDelivery, actor: Actor) -> WebhookDelivery:
    """Send ``delivery`` again by hand: the same delivery (the same ``webhook-id``, so a receiver
    that has it already can drop it), pending and due now, whatever its status was."""
    ensure_webhook_manager(team=delivery.endpoint.team, actor=actor)
    with transaction.atomic():
        locked_endpoint = _locked(delivery.endpoint, actor)
        _ensure_enabled(locked_endpoint, doing="re-send a delivery")
        locked = WebhookDelivery.objects.select_for_update().filter(pk=delivery.pk).first()
        if locked is None:
            raise NotFound("delivery not found")
        now = timezone.now()
        recorded = WebhookAttempt.objects.filter(delivery=locked).count()
        if locked.attempt_count > recorded and locked.next_attempt_at and locked.next_attempt_at > now:
            # Claimed by a worker that has not recorded its answer yet (its lease runs): making it
            # due now would let a second worker send it alongside.
            raise DeliveryInFlight("an attempt of this delivery is under way: see the log in a minute")
        previous = locked.status
        locked.status = WebhookDelivery.Status.PENDING
        locked.next_attempt_at = now
        locked.save(update_fields=["status", "next_attempt_at"])
        _trail(
            endpoint=locked_endpoint,
            actor=actor,
            change="webhook.resent",
            delivery_id=str(locked.id),
            previous_status=previous,
        )
        enqueue([locked.id], manual=True)
    return locked
