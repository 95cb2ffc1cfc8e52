"""Writes for approvals: raising one for a decision, resolving it (quorum, eligibility,
exactly once), and the deadline sweep (expiry or escalation)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from approvals.models import Approval, ApprovalEvent, ApprovalVote
from approvals.selectors import approval_is_own_request, approval_may_decide
from audit.models import AuditEvent
from audit.trail import TrailEntry, audit_event_append, audit_events_append
from common.errors import Conflict, NotAuthenticated, PermissionDenied
from tenancy.actor import Actor
from tenancy.principal import ApiKeyPrincipal
from tenancy.selectors import personal_key_owner, user_is_named

logger = logging.getLogger(__name__)


class AlreadyResolved(Conflict):
    code = "approval_already_resolved"


class NotAnApprover(PermissionDenied):
    code = "not_an_approver"


ResolveAction = Literal["approve", "deny"]


@dataclass(frozen=True, slots=True)
class ResolveOutcome:
    approval: Approval
    # False while an approval still waits for more approvers (quorum not reached yet).
    resolved: bool


def _trail(
    *,
    approval: Approval,
    action: str,
    actor_name: str,
    channel: str,
    actor: User | None = None,
    comment: str = "",
    remote_addr: str | None = None,
    now: datetime | None = None,
) -> None:
    """One line of the approval's trail, also chained into the team's audit events, which
    announces it once committed (``approval.resolved``, ``.expired``, ...: audit.events)."""
    now = now or timezone.now()
    ApprovalEvent.objects.create(
        approval=approval,
        action=action,
        actor_user=actor,
        actor_name=actor_name,
        comment=comment,
        channel=channel,
        remote_addr=remote_addr,
        created_at=now,
    )
    audit_event_append(
        team_id=approval.team_id,
        kind=AuditEvent.Kind.APPROVAL_ACTION,
        actor_name=actor_name,
        details=_trail_details(approval, action=action, comment=comment, channel=channel),
        remote_addr=remote_addr,
        now=now,
    )


def _trail_details(approval: Approval, *, action: str, comment: str, channel: str) -> dict[str, Any]:
    """What the audit trail says of one action on an approval (a person's, or the sweep's)."""
    return {
        "approval_id": str(approval.id),
        "tool": approval.tool_name,
        "rule_id": approval.rule_id or None,
        "action": action,
        "comment": comment,
        "channel": channel,
    }


def _record_refusal(
    *,
    approval: Approval,
    actor: User | None,
    why: str,
    channel: str,
    remote_addr: str | None,
    actor_name: str | None = None,
) -> None:
    """Keep a refused resolve in the trail; ``actor_name`` names a caller that is not a person (a key)."""
    name = actor_name if actor_name is not None else (actor.get_username() if actor is not None else "")
    # Its own transaction: the refusal is kept although the caller's request fails.
    with transaction.atomic():
        _trail(
            approval=approval,
            action=ApprovalEvent.Action.REFUSED,
            actor=actor,
            actor_name=name,
            comment=why,
            channel=channel,
            remote_addr=remote_addr,
        )
    logger.warning("approval.refused id=%s by=%s why=%s", approval.id, name, why)


def approval_refusal_record(*, approval: Approval, who: str, why: str, channel: str) -> None:
    """Keep in the trail that ``who`` (not a known person: a Slack user nobody here has the
    e-mail of, say) tried to decide ``approval`` and was refused."""
    _record_refusal(approval=approval, actor=None, actor_name=who, why=why, channel=channel, remote_addr=None)


def approval_resolve(
    *,
    approval: Approval,
    actor: Actor,
    action: ResolveAction,
    comment: str = "",
    resolved_by: str | None = None,
    via_slack: bool = False,
) -> ResolveOutcome:
    """Approve or deny, as ``actor``, exactly once: a person on the page (channel ``web``) or on
    a Slack button (``via_slack``: channel ``slack``, the person being the member whose e-mail
    Slack's user has), or through the API the person whose personal key it is (channel ``api``;
    ``resolved_by``, when given, must name them: see ``_deciding_person``).

    Only an eligible person may act (see ``approvals.selectors.approval_may_decide``), and
    nobody may approve a call their own request raised. A deny decides at once; approvals
    count towards ``min_approvals`` distinct people. The row is locked for the whole check, so
    concurrent resolves and the expiry sweep serialize: the first wins, the rest get
    ``AlreadyResolved`` and change nothing.
    """
    if actor.api_key is not None:
        channel = ApprovalEvent.Channel.API
    else:
        channel = ApprovalEvent.Channel.SLACK if via_slack else ApprovalEvent.Channel.WEB
    person = _deciding_person(approval=approval, actor=actor, resolved_by=resolved_by, channel=channel)
    return _resolve_as(
        approval=approval,
        actor=person,
        action=action,
        comment=comment,
        channel=channel,
        remote_addr=actor.remote_addr,
    )


def _resolve_as(
    *,
    approval: Approval,
    actor: User,
    action: ResolveAction,
    comment: str,
    channel: str,
    remote_addr: str | None,
) -> ResolveOutcome:
    # Past its deadline: escalated (the new groups decide) or expired first, as at the deadline.
    # One ``now`` for the settling and for the check under the lock below: with two, a deadline
    # falling between them was refused as "past its deadline" and left pending for the sweep.
    now = timezone.now()
    approval = approval_settle_due(approval=approval, now=now)
    if not approval_may_decide(approval=approval, user=actor):
        why = "not a member of this approval's approver groups"
        _record_refusal(approval=approval, actor=actor, why=why, channel=channel, remote_addr=remote_addr)
        raise NotAnApprover(f"{actor.get_username()} may not decide this approval: {why}")
    if action == "approve" and approval_is_own_request(approval=approval, user=actor):
        why = "the approval was raised by this person's own request"
        _record_refusal(approval=approval, actor=actor, why=why, channel=channel, remote_addr=remote_addr)
        raise NotAnApprover(f"{actor.get_username()} may not approve it: {why}")

    name = actor.get_username()
    with transaction.atomic():
        locked = Approval.objects.select_for_update().get(pk=approval.pk)
        if locked.status != Approval.Status.PENDING or locked.expires_at <= now:
            state = locked.status if locked.status != Approval.Status.PENDING else "past its deadline"
            by = f" by {locked.resolved_by}" if locked.resolved_by else ""
            raise AlreadyResolved(f"approval is already {state}{by}", details={"status": locked.status})
        if action == "deny":
            outcome_status, event = Approval.Status.DENIED, ApprovalEvent.Action.DENY
            resolved_by = name
        else:
            try:
                with transaction.atomic():
                    ApprovalVote.objects.create(approval=locked, user=actor, created_at=now)
            except IntegrityError as exc:
                raise AlreadyResolved(f"{name} has already approved; another approver is needed") from exc
            _trail(
                approval=locked,
                action=ApprovalEvent.Action.APPROVE,
                actor=actor,
                actor_name=name,
                comment=comment,
                channel=channel,
                remote_addr=remote_addr,
                now=now,
            )
            voters = list(
                ApprovalVote.objects.filter(approval=locked)
                .order_by("created_at", "id")
                .values_list("user__username", flat=True)
            )
            if len(voters) < locked.min_approvals:
                logger.info("approval.vote id=%s votes=%d/%d", locked.id, len(voters), locked.min_approvals)
                return ResolveOutcome(locked, resolved=False)
            outcome_status, event = Approval.Status.APPROVED, ApprovalEvent.Action.APPROVED
            resolved_by = ", ".join(voters)
        # Conditional on 'pending' as well as locked: a database without row locks (SQLite) still
        # cannot resolve twice.
        changed = Approval.objects.filter(pk=locked.pk, status=Approval.Status.PENDING).update(
            status=outcome_status, resolved_by=resolved_by, resolved_at=now, resolution_comment=comment
        )
        if changed != 1:
            raise AlreadyResolved("approval was resolved concurrently")
        _trail(
            approval=locked,
            action=event,
            actor=actor,
            actor_name=name,
            comment=comment if action == "deny" else "",
            channel=channel,
            remote_addr=remote_addr,
            now=now,
        )
        locked.refresh_from_db()
    logger.info("approval.%s id=%s by=%s", locked.status, locked.id, actor.pk)
    return ResolveOutcome(locked, resolved=True)


class PersonalKeyRequired(PermissionDenied):
    code = "personal_key_required"
    why = "a team's API key is not a person; resolve with a personal API key"

    @classmethod
    def for_key(cls, principal: ApiKeyPrincipal) -> PersonalKeyRequired:
        return cls(
            f"{principal.display_name} may not decide approvals: {cls.why}"
            ' (each person makes theirs on the "My API keys" page)'
        )


class ResolvedByMismatch(PermissionDenied):
    code = "resolved_by_mismatch"


def _deciding_person(*, approval: Approval, actor: Actor, resolved_by: str | None, channel: str) -> User:
    """The person who decides when ``actor`` does: the signed-in person, or the owner of a
    personal API key.

    Eligibility is only as good as the identity behind it, so a team's key (no person) and a
    process never decide, and a personal key decides as its owner only: ``resolved_by``, when
    given, must name them (username or e-mail). Each refusal of a key is kept in the trail. The
    owner is read afresh (active, still in the team, key not revoked), not taken from the
    principal cache.
    """
    if actor.user is not None:
        return actor.user
    principal = actor.api_key
    if principal is None:
        raise NotAnApprover(f"{actor.name} may not decide approvals: only a person does")
    remote_addr = actor.remote_addr
    if not principal.is_personal:
        _record_refusal(
            channel=channel,
            approval=approval,
            actor=None,
            actor_name=principal.display_name,
            why=PersonalKeyRequired.why,
            remote_addr=remote_addr,
        )
        raise PersonalKeyRequired.for_key(principal)
    owner = personal_key_owner(principal=principal)
    if owner is None:
        raise NotAuthenticated("Invalid or revoked API key.")
    if resolved_by is not None and not user_is_named(user=owner, name=resolved_by):
        why = f"resolvedBy {resolved_by!r} is not this key's owner"
        _record_refusal(approval=approval, actor=owner, why=why, channel=channel, remote_addr=remote_addr)
        raise ResolvedByMismatch(
            f"{why} ({owner.get_username()}); a personal key resolves only as its owner",
            details={"field": "resolvedBy"},
        )
    return owner


SWEEP_BATCH = 500


def approvals_expire_due(
    *, now: datetime | None = None, team_ids: Collection[uuid.UUID] | None = None
) -> int:
    """Expire (or escalate, once, where the rule says ``escalate_to``) every pending approval past
    its deadline; returns how many changed. Idempotent: run by the beat sweep every few seconds
    (every team), and by the lists and pages that show approvals (``team_ids``: theirs), so what
    they show never lags behind a sweep.

    ``SELECT ... FOR UPDATE SKIP LOCKED``: rows a resolve is deciding right now are skipped (the
    resolve wins; the next sweep sees them no longer pending), and two sweeps never take the
    same row. The transitions themselves are conditional as well (see ``_apply_deadlines``): each
    batch is set-based, a few statements however many it changes.
    """
    now = now or timezone.now()
    changed = 0
    while True:
        with transaction.atomic():
            due = Approval.objects.select_for_update(skip_locked=True).filter(
                status=Approval.Status.PENDING, expires_at__lte=now
            )
            if team_ids is not None:
                due = due.filter(team_id__in=team_ids)
            batch = list(due.order_by("expires_at")[:SWEEP_BATCH])
            batch_changed = _apply_deadlines(batch, now)
            changed += batch_changed
        # A full batch that changed nothing would be read again as it is: stop (the next sweep retries).
        if len(batch) < SWEEP_BATCH or not batch_changed:
            break
    if changed:
        logger.info("approval.sweep changed=%d", changed)
    return changed


def approval_settle_due(*, approval: Approval, now: datetime | None = None) -> Approval:
    """``approval`` as of now: if its deadline has passed while it was pending, it is escalated
    (once, where the rule says ``escalate_to``) or expired here and now, as the sweep would have
    done at the deadline, so no reader sees a 'pending' that nobody may decide any more.

    Costs nothing (no query) for an approval that is not pending past its deadline, so every
    read path (the SDK's poll, the admin API, the pages) calls it. Exactly once against the
    sweep and other readers: the row is locked (waiting, not skipping: the answer must be the
    settled state) and every transition is conditional on the state it was read in.
    """
    now = now or timezone.now()
    if approval.status != Approval.Status.PENDING or approval.expires_at > now:
        return approval
    with transaction.atomic():
        locked = Approval.objects.select_for_update().get(pk=approval.pk)
        _apply_deadline(locked, now)
    return locked


_EXPIRED_COMMENT = "no decision before the deadline; the agent's call is denied"
_TIMEOUT_ACTOR = "system:timeout"


def _escalation_comment(deadline: datetime, new_deadline: datetime, groups: Collection[str]) -> str:
    return (
        f"no decision by {deadline.isoformat()}; handed to {', '.join(groups)}"
        f" until {new_deadline.isoformat()}"
    )


def _apply_deadlines(batch: list[Approval], now: datetime) -> int:
    """``_apply_deadline`` for a whole batch read under its row locks, set-based: one conditional
    ``UPDATE ... RETURNING`` escalates the ones whose rule escalates (once), one expires the rest
    and the escalated ones whose new deadline has passed too; their trail lines are one insert,
    their chain entries one append per team, their events announced in order after the commit.
    Same rows, trail, chain entries and events as one ``_apply_deadline`` per approval, in the
    batch's order; returns how many changed.

    Each UPDATE is conditional on 'pending' (and the escalation on not escalated yet), and only
    the rows it returns get a trail line, so an approval a person resolved in between (a
    database without row locks) is left as they decided it.
    """
    if not batch:
        return 0
    table = connection.ops.quote_name(Approval._meta.db_table)
    pk_prep = Approval._meta.pk.get_db_prep_value
    time_prep = Approval._meta.get_field("expires_at").get_db_prep_value
    db_now = time_prep(now, connection)
    # (approval, action, comment) in the batch's order: the chain and the events follow it.
    steps: dict[uuid.UUID, list[tuple[str, str]]] = {a.id: [] for a in batch}
    to_escalate = [a for a in batch if a.escalate_to and a.escalated_at is None]
    escalated: set[uuid.UUID] = set()
    to_expire = [a for a in batch if not (a.escalate_to and a.escalated_at is None)]
    if to_escalate:
        new_deadlines = {a.id: a.expires_at + timedelta(seconds=a.timeout_seconds) for a in to_escalate}
        cases = " ".join("WHEN %s THEN %s" for _ in to_escalate)
        marks = ", ".join("%s" for _ in to_escalate)
        params: list[Any] = []
        for a in to_escalate:
            params += [pk_prep(a.id, connection), time_prep(new_deadlines[a.id], connection)]
        params += [pk_prep(a.id, connection) for a in to_escalate]
        params += [Approval.Status.PENDING, db_now]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET approver_groups = escalate_to, escalated_at = expires_at,"
                f" expires_at = CASE id {cases} END"
                f" WHERE id IN ({marks}) AND status = %s AND escalated_at IS NULL AND expires_at <= %s"
                " RETURNING id",
                params,
            )
            escalated = {uuid.UUID(str(row[0])) for row in cursor.fetchall()}
        for a in to_escalate:
            if a.id not in escalated:
                continue
            steps[a.id].append(
                (
                    ApprovalEvent.Action.ESCALATED,
                    _escalation_comment(a.expires_at, new_deadlines[a.id], a.escalate_to),
                )
            )
            logger.info("approval.%s id=%s deadline=%s", "escalated", a.id, a.expires_at.isoformat())
            # As _apply_deadline re-reads it: the new deadline may itself have passed.
            a.approver_groups, a.escalated_at, a.expires_at = a.escalate_to, a.expires_at, new_deadlines[a.id]
            if a.expires_at <= now:
                to_expire.append(a)
    expired: set[uuid.UUID] = set()
    if to_expire:
        marks = ", ".join("%s" for _ in to_expire)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET status = %s, resolved_at = expires_at, resolved_by = %s"
                f" WHERE id IN ({marks}) AND status = %s AND expires_at <= %s RETURNING id",
                [
                    Approval.Status.EXPIRED,
                    _TIMEOUT_ACTOR,
                    *(pk_prep(a.id, connection) for a in to_expire),
                    Approval.Status.PENDING,
                    db_now,
                ],
            )
            expired = {uuid.UUID(str(row[0])) for row in cursor.fetchall()}
        for a in to_expire:
            if a.id in expired:
                steps[a.id].append((ApprovalEvent.Action.EXPIRED, _EXPIRED_COMMENT))
                logger.info("approval.%s id=%s deadline=%s", "expired", a.id, a.expires_at.isoformat())
    _trail_many(batch=batch, steps=steps, now=now)
    return len(escalated | expired)


def _trail_many(
    *, batch: list[Approval], steps: dict[uuid.UUID, list[tuple[str, str]]], now: datetime
) -> None:
    """``_trail`` (the sweep's: actor system:timeout, channel system) for each of ``steps``, in
    the batch's order: one insert of trail lines, one chain append per team."""
    lines: list[ApprovalEvent] = []
    by_team: dict[uuid.UUID, list[TrailEntry]] = {}
    for approval in batch:
        for action, comment in steps[approval.id]:
            lines.append(
                ApprovalEvent(
                    approval=approval,
                    action=action,
                    actor_user=None,
                    actor_name=_TIMEOUT_ACTOR,
                    comment=comment,
                    channel=ApprovalEvent.Channel.SYSTEM,
                    remote_addr=None,
                    created_at=now,
                )
            )
            by_team.setdefault(approval.team_id, []).append(
                TrailEntry(
                    kind=AuditEvent.Kind.APPROVAL_ACTION,
                    actor_name=_TIMEOUT_ACTOR,
                    details=_trail_details(
                        approval, action=action, comment=comment, channel=ApprovalEvent.Channel.SYSTEM
                    ),
                    now=now,
                )
            )
    if not lines:
        return
    ApprovalEvent.objects.bulk_create(lines)
    for team_id, entries in by_team.items():
        audit_events_append(team_id=team_id, entries=entries)


def _apply_deadline(approval: Approval, now: datetime) -> int:
    """Escalate or expire ``approval`` (read under its row lock) for each deadline that has
    passed by ``now``; returns 1 if it changed. The times recorded are the deadlines', not
    ``now``: an approval settled late reads exactly as one settled on time (an escalation's new
    deadline counts from the first one, and may itself have passed: then it expires too)."""
    changed = False
    while approval.status == Approval.Status.PENDING and approval.expires_at <= now:
        deadline = approval.expires_at
        # Conditional on what was read, so a database without row locks (SQLite) still cannot
        # escalate twice or expire twice.
        pending = Approval.objects.filter(pk=approval.pk, status=Approval.Status.PENDING, expires_at=deadline)
        if approval.escalate_to and approval.escalated_at is None:
            new_deadline = deadline + timedelta(seconds=approval.timeout_seconds)
            updated = pending.filter(escalated_at__isnull=True).update(
                approver_groups=approval.escalate_to, escalated_at=deadline, expires_at=new_deadline
            )
            action = ApprovalEvent.Action.ESCALATED
            comment = (
                f"no decision by {deadline.isoformat()}; handed to {', '.join(approval.escalate_to)}"
                f" until {new_deadline.isoformat()}"
            )
        else:
            updated = pending.update(
                status=Approval.Status.EXPIRED, resolved_at=deadline, resolved_by="system:timeout"
            )
            action = ApprovalEvent.Action.EXPIRED
            comment = "no decision before the deadline; the agent's call is denied"
        if not updated:
            break
        _trail(
            approval=approval,
            action=action,
            actor_name="system:timeout",
            comment=comment,
            channel=ApprovalEvent.Channel.SYSTEM,
            now=now,
        )
        logger.info("approval.%s id=%s deadline=%s", action, approval.id, deadline.isoformat())
        approval.refresh_from_db()
        changed = True
    return int(changed)
