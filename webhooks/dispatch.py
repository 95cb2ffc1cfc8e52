"""Events to deliveries: each endpoint reads its team's ordered record after its cursors.

Nothing is written on the request's hot path: the decision writer and the governance trail
already commit every change in the team's order (the audit chains), and an endpoint keeps one
cursor per stream (``decisions_cursor``, ``events_cursor``). ``dispatch_team`` locks each
enabled endpoint's row (``select_for_update``), reads the events after its cursors in pages
(``audit.selectors.team_events_after``), turns those it subscribes to into
``WebhookDelivery`` rows (``source_key`` "<stream>:<sequence>:<event>", unique per endpoint,
inserted ignoring conflicts) and advances the cursors in the same transaction, then enqueues
the deliveries after commit. Run twice, or by two workers at once, it makes each delivery once:
the second waits for the lock and then finds the cursors moved. A task that is lost only
delays: the beat sweep dispatches every team with enabled endpoints.

Which events become which webhook events:

* ``decision.created`` with decision ``deny``: ``budget_exceeded`` when the rule that decided
  has ``rate_limits`` (such a rule fires only when a limit is exceeded, policies/engine/
  evaluator.py; the decision row does not record ``rate_limited``, so the rule is read from the
  version the row names), ``deny`` otherwise. One event per decision: an endpoint that wants
  rate-limit denials subscribes to ``budget_exceeded``. (Session budgets, ``sessionConstraints``,
  are not enforced by this server yet, so a rate limit is the only budget that trips here.)
* ``decision.created`` with ``require_approval``: ``require_approval`` (also when a rate-limited
  rule asked for the approval: the approval is what the receiver acts on). Its
  ``approval.created`` twin at the same sequence is skipped, so it is sent once.
* ``approval.resolved``, ``approval.expired``, ``policy.published`` (a rule-set publish or
  rollback; per-tool policy changes are not sent), ``webhook.failed``: as named.
* Everything else (allow decisions, votes, escalations, refusals, team changes): nothing.

Severity: a decision's is its rule's (``DecisionRecord.severity``; a blank one, from a client
decision without a rule, counts as the engine's default, medium); an approval's end has the
severity of the approval (its rule's), so an endpoint that received the request also receives
its end (PagerDuty's ``resolve``, Slack's retired buttons). ``min_severity`` filters those.
``policy.published`` (info) and ``webhook.failed`` (high) carry no rule's severity: they are
governance events an endpoint chooses by type alone, and ``min_severity`` does not filter them
(an endpoint for high-severity denials that also asked for publishes gets every publish).

The message is built once per event from the committed rows (the decision, the approval, the
trail entry, the rule-set version), shared by every endpoint, and stored on the delivery: a
call's arguments and context are never read.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from approvals.models import Approval
from audit.models import AuditEvent, ChainHead, ChainStream, DecisionRecord
from audit.selectors import team_events_after
from common.events import Event, EventType
from policies.engine.document import DEFAULT_SEVERITY
from policies.models import RuleSetVersion
from tenancy.models import ApiKey, Team
from webhooks.approval_messages import approval_end_message, dashboard_link
from webhooks.delivery import enqueue, lease_seconds
from webhooks.messages import ApprovalFacts, DecisionFacts, PolicyFacts, WebhookFailureFacts, WebhookMessage
from webhooks.models import SEVERITY_ORDER, WebhookDelivery, WebhookEndpoint, WebhookEvent
from webhooks.slack.retire import slack_messages_retire, slack_messages_to_retire

logger = logging.getLogger(__name__)

# Chain entries read per query, and per endpoint per transaction (a long backlog is worked off
# in several transactions, so the endpoint's row lock is never held for long).
PAGE_SIZE = 500
ENTRIES_PER_TRANSACTION = 5000
# Chosen by type alone (see the module): min_severity does not filter them.
UNFILTERED_EVENTS = frozenset({WebhookEvent.POLICY_PUBLISHED, WebhookEvent.WEBHOOK_FAILED})
GOVERNANCE_SEVERITY = {WebhookEvent.POLICY_PUBLISHED: "info", WebhookEvent.WEBHOOK_FAILED: "high"}
_TRAIL_EVENTS = {
    EventType.APPROVAL_RESOLVED: WebhookEvent.APPROVAL_RESOLVED,
    EventType.APPROVAL_EXPIRED: WebhookEvent.APPROVAL_EXPIRED,
    EventType.POLICY_PUBLISHED: WebhookEvent.POLICY_PUBLISHED,
    EventType.WEBHOOK_FAILED: WebhookEvent.WEBHOOK_FAILED,
}
# The event types that may become a delivery (the sink subscribes to these).
SOURCE_EVENT_TYPES = (EventType.DECISION_CREATED, *_TRAIL_EVENTS)


def enabled_endpoint_ids(team_id: uuid.UUID | str) -> list[uuid.UUID]:
    return list(
        WebhookEndpoint.objects.filter(team_id=team_id, enabled=True).order_by("created_at").values_list("id", flat=True)
    )


def teams_with_enabled_endpoints() -> list[uuid.UUID]:
    return list(WebhookEndpoint.objects.filter(enabled=True).values_list("team_id", flat=True).distinct())


def teams_behind() -> list[uuid.UUID]:
    """The teams with an enabled endpoint whose cursor is behind its stream's head: what the
    sweep dispatches (two queries, however many teams; an idle team costs it nothing more)."""
    cursors = list(
        WebhookEndpoint.objects.filter(enabled=True).values_list("team_id", "decisions_cursor", "events_cursor")
    )
    if not cursors:
        return []
    heads = {
        (team_id, stream): sequence
        for team_id, stream, sequence in ChainHead.objects.filter(
            team_id__in={team_id for team_id, _, _ in cursors}
        ).values_list("team_id", "stream", "sequence")
    }
    behind = {
        team_id
        for team_id, decisions, events in cursors
        if heads.get((team_id, ChainStream.DECISIONS), 0) > decisions
        or heads.get((team_id, ChainStream.EVENTS), 0) > events
    }
    return sorted(behind, key=str)


def dispatch_team(team_id: uuid.UUID | str) -> int:
    """Turn the team's events after each enabled endpoint's cursors into deliveries; returns how
    many deliveries were made (sent after each transaction commits)."""
    team = Team.objects.filter(id=team_id).first()
    if team is None:
        return 0
    builder = MessageBuilder(team)
    made = 0
    for endpoint_id in enabled_endpoint_ids(team.id):
        while True:
            count, more = _dispatch_endpoint(endpoint_id, team, builder)
            made += count
            if not more:
                break
    return made


def _dispatch_endpoint(endpoint_id: uuid.UUID, team: Team, builder: MessageBuilder) -> tuple[int, bool]:
    """One transaction of one endpoint: (deliveries made, whether entries are left to read)."""
    to_retire: list[uuid.UUID] = []
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().filter(id=endpoint_id, enabled=True).first()
        if endpoint is None:
            return 0, False
        subscribed = frozenset(endpoint.events or ())
        deliveries: list[WebhookDelivery] = []
        more = False
        cursors: dict[str, int] = {}
        for stream, cursor_name in (
            (ChainStream.DECISIONS, "decisions_cursor"),
            (ChainStream.EVENTS, "events_cursor"),
        ):
            cursor = getattr(endpoint, cursor_name)
            events, cursor, left = _read(team.id, stream, cursor)
            more = more or left
            cursors[cursor_name] = cursor
            # Slack messages whose approval ended get their buttons replaced, whichever events
            # the endpoint subscribes to: riding the cursor, no ending is missed.
            to_retire.extend(slack_messages_to_retire(endpoint=endpoint, events=events))
            for event, webhook_event, message in builder.messages(events, subscribed):
                if not _passes(webhook_event, message.severity, endpoint.min_severity):
                    continue
                deliveries.append(
                    WebhookDelivery(
                        endpoint=endpoint,
                        team_id=team.id,
                        event=webhook_event,
                        source_key=f"{event.stream}:{event.sequence}:{webhook_event}",
                        severity=message.severity,
                        message=message.as_json(),
                        next_attempt_at=timezone.now(),
                    )
                )
        if deliveries:
            WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True, batch_size=500)
            # Rows that conflicted were not made; their tasks find nothing and return.
            enqueue([d.id for d in deliveries])
        if any(cursors[name] != getattr(endpoint, name) for name in cursors):
            WebhookEndpoint.objects.filter(id=endpoint.id).update(**cursors)
    if deliveries:
        logger.info("webhook.dispatched endpoint=%s team=%s deliveries=%d", endpoint.id, team.id, len(deliveries))
    # Slack calls (bounded, 5 s each) after the commit, outside the endpoint's lock; one that
    # fails is logged and a later press on the message replaces its buttons then.
    for approval_id in dict.fromkeys(to_retire):
        try:
            slack_messages_retire(approval_id=approval_id)
        except Exception:  # noqa: BLE001 - never lose the dispatch over a Slack call
            logger.exception("webhook.slack_retire_failed approval=%s", approval_id)
    return len(deliveries), more


def _read(team_id: uuid.UUID, stream: str, cursor: int) -> tuple[list[Event], int, bool]:
    """The events after ``cursor``, up to ENTRIES_PER_TRANSACTION entries: (events, the new
    cursor, whether more are left)."""
    events: list[Event] = []
    entries = 0
    while entries < ENTRIES_PER_TRANSACTION:
        page = team_events_after(team_id=team_id, stream=stream, after_sequence=cursor, limit=PAGE_SIZE)
        if not page:
            return events, cursor, False
        events.extend(page)
        # A decision that raised an approval is two events at one sequence: count entries.
        read = len({event.sequence for event in page})
        entries += read
        cursor = page[-1].sequence
        if read < PAGE_SIZE:
            return events, cursor, False
    return events, cursor, True


def _passes(webhook_event: str, severity: str, min_severity: str) -> bool:
    if webhook_event in UNFILTERED_EVENTS:
        return True
    return _rank(severity) >= _rank(min_severity)


def _rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else SEVERITY_ORDER.index(DEFAULT_SEVERITY)


def candidate(event: Event) -> bool:
    """Whether ``event`` may become a delivery at all (before reading any row)."""
    if event.type is EventType.DECISION_CREATED:
        return event.data.get("decision") in (DecisionRecord.Outcome.DENY, DecisionRecord.Outcome.REQUIRE_APPROVAL)
    return event.type in _TRAIL_EVENTS


def _could_want(event: Event, subscribed: frozenset[str]) -> bool:
    if event.type is EventType.DECISION_CREATED:
        if event.data.get("decision") == DecisionRecord.Outcome.REQUIRE_APPROVAL:
            return WebhookEvent.REQUIRE_APPROVAL in subscribed
        return bool(subscribed & {WebhookEvent.DENY, WebhookEvent.BUDGET_EXCEEDED})
    return _TRAIL_EVENTS.get(event.type) in subscribed


@dataclass
class MessageBuilder:
    """Builds each event's message once per dispatch, reading the rows a page of events needs in
    one query per kind (decisions, approvals, trail entries, versions, keys)."""

    team: Team
    _built: dict[tuple[str, int, str], tuple[str, WebhookMessage] | None] = field(default_factory=dict)
    _versions: dict[int, frozenset[str]] = field(default_factory=dict)

    def messages(
        self, events: Sequence[Event], subscribed: frozenset[str]
    ) -> Iterable[tuple[Event, str, WebhookMessage]]:
        wanted = [e for e in events if candidate(e) and _could_want(e, subscribed)]
        self._prepare([e for e in wanted if self._key(e) not in self._built])
        for event in wanted:
            built = self._built.get(self._key(event))
            if built is not None and built[0] in subscribed:
                yield event, built[0], built[1]

    @staticmethod
    def _key(event: Event) -> tuple[str, int, str]:
        return (event.stream, event.sequence, event.type.value)

    def _prepare(self, events: Sequence[Event]) -> None:
        if not events:
            return
        decision_ids = [str(e.data["decision_id"]) for e in events if e.type is EventType.DECISION_CREATED]
        decisions: dict[str, dict[str, Any]] = {
            str(row["id"]): dict(row)
            for row in DecisionRecord.objects.filter(team_id=self.team.id, id__in=decision_ids).values(
                "id",
                "tool_name",
                "decision",
                "rule_id",
                "rule_name",
                "reason",
                "severity",
                "source",
                "rule_set_version",
                "approval_id",
                "api_key_id",
                "created_at",
                "model",
                "environment",
                "agent_id",
                "session_id",
            )
        }
        approval_ids = {str(e.data["approval_id"]) for e in events if e.data.get("approval_id")}
        approvals = {
            str(a.id): a
            for a in Approval.objects.filter(team_id=self.team.id, id__in=approval_ids).only(
                "id",
                "tool_name",
                "rule_name",
                "severity",
                "status",
                "resolved_by",
                "resolved_at",
                "expires_at",
                "decision_id",
            )
        }
        trail_sequences = [e.sequence for e in events if e.stream == ChainStream.EVENTS]
        trail = {
            sequence: (actor, json.loads(record).get("details") or {})
            for sequence, actor, record in AuditEvent.objects.filter(
                team_id=self.team.id, sequence__in=trail_sequences
            ).values_list("sequence", "actor_name", "record")
        }
        self._load_versions({row["rule_set_version"] for row in decisions.values() if row["rule_set_version"]})
        key_ids = {row["api_key_id"] for row in decisions.values() if row["api_key_id"]}
        key_names = dict(ApiKey.objects.filter(id__in=key_ids).values_list("id", "name")) if key_ids else {}
        for event in events:
            try:
                self._built[self._key(event)] = self._build(event, decisions, approvals, trail, key_names)
            except Exception:  # noqa: BLE001 - one unreadable entry must not stop the others
                logger.exception("webhook.message_failed team=%s stream=%s sequence=%d", self.team.id, event.stream, event.sequence)
                self._built[self._key(event)] = None

    def _load_versions(self, numbers: set[int]) -> None:
        missing = numbers - set(self._versions)
        if not missing:
            return
        for number, document in RuleSetVersion.objects.filter(team_id=self.team.id, number__in=missing).values_list(
            "number", "document"
        ):
            rules = (document or {}).get("rules") or []
            self._versions[number] = frozenset(
                str(rule.get("id")) for rule in rules if isinstance(rule, dict) and rule.get("rate_limits")
            )
        for number in missing - set(self._versions):
            self._versions[number] = frozenset()

    def _build(
        self,
        event: Event,
        decisions: dict[str, dict[str, Any]],
        approvals: dict[str, Approval],
        trail: dict[int, tuple[str, dict[str, Any]]],
        key_names: dict[uuid.UUID, str],
    ) -> tuple[str, WebhookMessage] | None:
        if event.type is EventType.DECISION_CREATED:
            row = decisions.get(str(event.data["decision_id"]))
            if row is None:
                return None
            return self._decision_message(row, approvals, key_names)
        webhook_event = _TRAIL_EVENTS[event.type]
        actor, details = trail.get(event.sequence, ("", {}))
        if webhook_event in (WebhookEvent.APPROVAL_RESOLVED, WebhookEvent.APPROVAL_EXPIRED):
            approval = approvals.get(str(event.data.get("approval_id")))
            if approval is None:
                return None
            return webhook_event, self._approval_message(webhook_event, event, approval)
        if webhook_event == WebhookEvent.POLICY_PUBLISHED:
            version = int(details.get("version") or event.data.get("version") or 0)
            kind = str(details.get("publication") or "publish")
            verb = "rolled back to" if kind == "rollback" else "published"
            return webhook_event, self._message(
                webhook_event,
                GOVERNANCE_SEVERITY[webhook_event],
                event.occurred_at,
                f"Policy version {version} {verb} by {actor or 'unknown'} in {self.team.name}",
                links={"policy": self._link("policies:version", slug=self.team.slug, number=version)},
                policy=PolicyFacts(version=version, published_by=actor, kind=kind),
            )
        name = str(details.get("endpoint_name") or "")
        reason = str(details.get("reason") or event.data.get("reason") or "")
        why = "the receiver answered 410 Gone" if reason == "gone" else "every attempt failed for 5 days"
        return webhook_event, self._message(
            webhook_event,
            GOVERNANCE_SEVERITY[webhook_event],
            event.occurred_at,
            f"Webhook {name!r} of {self.team.name} was disabled: {why}",
            webhook=WebhookFailureFacts(
                endpoint_id=str(details.get("endpoint_id") or event.data.get("endpoint_id") or ""),
                endpoint_name=name,
                reason=reason,
            ),
        )

    def _decision_message(
        self, row: dict[str, Any], approvals: dict[str, Approval], key_names: dict[uuid.UUID, str]
    ) -> tuple[str, WebhookMessage]:
        severity = row["severity"] or DEFAULT_SEVERITY
        rule = row["rule_name"] or row["rule_id"] or "no rule"
        links = {
            "decision": self._link("dashboard:decision", slug=self.team.slug, decision_id=row["id"]),
        }
        approval_facts = None
        if row["decision"] == DecisionRecord.Outcome.REQUIRE_APPROVAL:
            webhook_event = WebhookEvent.REQUIRE_APPROVAL
            summary = f"Approval needed: {row['tool_name']} ({rule}) in {self.team.name}"
            approval = approvals.get(str(row["approval_id"])) if row["approval_id"] else None
            if approval is not None:
                links["approval"] = self._link("approvals:detail", approval_id=approval.id)
                # As it was when the decision asked for it: its end is a message of its own.
                approval_facts = ApprovalFacts(
                    approval_id=str(approval.id),
                    status=Approval.Status.PENDING,
                    tool_name=approval.tool_name,
                    rule_name=approval.rule_name,
                    expires_at=approval.expires_at,
                )
        elif row["rule_id"] and row["rule_id"] in self._versions.get(row["rule_set_version"] or 0, frozenset()):
            webhook_event = WebhookEvent.BUDGET_EXCEEDED
            summary = f"Rate limit exceeded: {row['tool_name']} denied ({rule}) in {self.team.name}"
        else:
            webhook_event = WebhookEvent.DENY
            summary = f"Denied: {row['tool_name']} ({rule}) in {self.team.name}"
        facts = DecisionFacts(
            decision_id=str(row["id"]),
            tool_name=row["tool_name"],
            decision=row["decision"],
            rule_id=row["rule_id"],
            rule_name=row["rule_name"],
            reason=row["reason"],
            agent_id=row["agent_id"],
            session_id=row["session_id"],
            model=row["model"],
            environment=row["environment"],
            source=row["source"],
            api_key_name=key_names.get(row["api_key_id"], "") if row["api_key_id"] else "",
        )
        return webhook_event, self._message(
            webhook_event, severity, row["created_at"], summary, links=links, decision=facts, approval=approval_facts
        )

    def _approval_message(self, webhook_event: str, event: Event, approval: Approval) -> WebhookMessage:
        status = event.data.get("status")
        return approval_end_message(
            approval,
            team=self.team,
            webhook_event=webhook_event,
            occurred_at=event.occurred_at,
            status=str(status) if status else None,
        )

    def _message(
        self, webhook_event: str, severity: str, occurred_at: datetime, summary: str, **parts: Any
    ) -> WebhookMessage:
        return WebhookMessage(
            event=webhook_event,
            severity=severity,
            occurred_at=occurred_at,
            team_slug=self.team.slug,
            team_name=self.team.name,
            summary=summary,
            **parts,
        )

    @staticmethod
    def _link(name: str, **kwargs: Any) -> str:
        return dashboard_link(name, **kwargs)


# --- the sweep ----------------------------------------------------------------------------------

# Due deliveries the sweep hands to tasks per run.
SWEEP_BATCH = 1000
# A delivery the sweep handed to a task is not handed again for this long (the task may sit
# behind a backlog in the queue; the claim makes a second one harmless, but not free).
SWEEP_REMEMBER_SECONDS = 120.0
_SWEPT = "webhooks:swept:{}"


def sweep(*, now: datetime | None = None) -> tuple[int, int]:
    """Dispatch every team whose endpoints are behind, then enqueue the deliveries that are due and
    that no task took; returns (deliveries made, deliveries enqueued).

    "No task took": a delivery never attempted was enqueued when it was made, so it counts only
    once it is a lease old (webhooks.delivery.lease_seconds); a retry is due one sweep period
    after its time (a retry more than a minute away has no task but this). And one the sweep
    enqueued lately is skipped (remembered in the cache), so a backlog in the queue is not
    topped up with copies of itself every few seconds."""
    made = 0
    for team_id in teams_behind():
        try:
            made += dispatch_team(team_id)
        except Exception:  # noqa: BLE001 - one team's failure must not stop the others' sweep
            logger.exception("webhook.dispatch_failed team=%s", team_id)
    now = now or timezone.now()
    period = timedelta(seconds=settings.VETO_WEBHOOK_SWEEP_SECONDS)
    lease = timedelta(seconds=max(lease_seconds(), settings.VETO_WEBHOOK_SWEEP_SECONDS))
    candidates = [
        str(delivery_id)
        for delivery_id in WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
        .filter(
            Q(attempt_count=0, next_attempt_at__lte=now - lease)
            | Q(attempt_count__gt=0, next_attempt_at__lte=now - period)
        )
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:SWEEP_BATCH]
    ]
    if not candidates:
        return made, 0
    try:
        recent = cache.get_many([_SWEPT.format(i) for i in candidates])
        cache.set_many({_SWEPT.format(i): 1 for i in candidates if _SWEPT.format(i) not in recent}, SWEEP_REMEMBER_SECONDS)
    except Exception:  # noqa: BLE001 - the cache away: enqueue them all (the claim makes copies harmless)
        logger.warning("webhook.sweep_cache_failed", exc_info=True)
        recent = {}
    due = [i for i in candidates if _SWEPT.format(i) not in recent]
    if due:
        logger.info("webhook.sweep due=%d skipped=%d", len(due), len(candidates) - len(due))
        enqueue(due)
    return made, len(due)


def dispatch_team_clearing(team_id: uuid.UUID | str) -> int:
    """The task's body: clear the team's pending-dispatch flag (webhooks.sink), then dispatch, so
    an event committed while this runs schedules another dispatch rather than being missed."""
    from webhooks import sink

    sink.clear_pending(team_id)
    return dispatch_team(team_id)
