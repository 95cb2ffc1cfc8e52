"""Reads for approvals: lookups, who may decide, the browser queue and the API lists."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.db.models import Exists, F, Func, OuterRef, Q, QuerySet, Subquery, TextField
from django.utils import timezone

from approvals.models import Approval, ApprovalEvent
from common.errors import NotFound
from tenancy.identity import identities_in_call_context, identity_key
from tenancy.models import ApiKey, ApproverGroup, Membership, Team


def approval_get_for_team(*, team_id: uuid.UUID, approval_id: uuid.UUID) -> Approval:
    """The team's approval, or NotFound (also for another team's id: ids are not a side channel)."""
    try:
        return Approval.objects.get(pk=approval_id, team_id=team_id)
    except Approval.DoesNotExist as exc:
        raise NotFound("approval not found") from exc


@dataclass(frozen=True, slots=True)
class _Eligibility:
    """What makes one user eligible, read once: their groups per team and the teams they administer."""

    groups_by_team: dict[uuid.UUID, set[str]]
    admin_team_flags: dict[uuid.UUID, bool]  # team -> admins_may_approve

    @classmethod
    def of(cls, user: User) -> _Eligibility:
        groups: dict[uuid.UUID, set[str]] = {}
        for team_id, slug in ApproverGroup.objects.filter(members=user).values_list("team_id", "slug"):
            groups.setdefault(team_id, set()).add(slug)
        admin = dict(
            Membership.objects.filter(user=user, role=Membership.Role.ADMIN).values_list(
                "team_id", "team__admins_may_approve"
            )
        )
        return cls(groups, admin)

    def team_ids(self) -> set[uuid.UUID]:
        return set(self.groups_by_team) | set(self.admin_team_flags)

    def q(self) -> Q:
        """``may_decide`` as a filter, for PostgreSQL (``?|``: any of the groups is an element of
        the approval's JSON list): the queue and its counts are read in SQL, not row by row."""
        eligible = Q(pk__in=[])
        for team_id in self.team_ids():
            groups = sorted(self.groups_by_team.get(team_id, set()))
            decides = Q(approver_groups__has_any_keys=groups) if groups else Q(pk__in=[])
            if team_id in self.admin_team_flags:
                if self.admin_team_flags[team_id]:
                    decides = Q()
                else:  # an approval that names no group: the team's admins decide it
                    decides |= Q(approver_groups=[]) | Q(approver_groups__isnull=True)
            eligible |= Q(team_id=team_id) & decides
        return eligible

    def may_decide(self, approval: Approval) -> bool:
        """In one of the approval's groups; or an admin of its team, when the team lets admins
        decide or the approval names no group (someone must be able to decide it)."""
        groups = approval.approver_groups or []
        if self.groups_by_team.get(approval.team_id, set()).intersection(groups):
            return True
        if approval.team_id not in self.admin_team_flags:
            return False
        return not groups or self.admin_team_flags[approval.team_id]


def approval_may_decide(*, approval: Approval, user: User | AnonymousUser) -> bool:
    """Whether ``user`` is eligible to approve or deny ``approval`` (see ``_Eligibility``)."""
    if not user.is_authenticated:
        return False
    return _Eligibility.of(user).may_decide(approval)


def approval_raised_by(approval: Approval) -> set[str]:
    """The identities (normalised, see ``tenancy.identity``) the approval's call was made for:
    every place the SDK or the caller put one in the call's context, which is recorded as sent."""
    return {identity_key(value) for value in identities_in_call_context(approval.context)}


def approval_raised_with_key_of(*, approval: Approval, user: User) -> bool:
    """Whether the call that raised ``approval`` was made with one of ``user``'s personal API keys
    (its decision row keeps the key's id): then it was made as them, whatever its context says."""
    if approval.decision_id is None:
        return False
    from audit.models import DecisionRecord

    key_id = DecisionRecord.objects.filter(pk=approval.decision_id).values("api_key_id")[:1]
    return ApiKey.objects.filter(pk=Subquery(key_id), user=user).exists()


def approval_is_own_request(*, approval: Approval, user: User) -> bool:
    """Whether the call was made on ``user``'s behalf: an identity in its context is their
    username or e-mail, however spelled (case, width, invisible characters, look-alike letters),
    or it was made with their personal API key."""
    mine = {identity_key(user.get_username()), identity_key(getattr(user, "email", "") or "")} - {""}
    if not mine.isdisjoint(approval_raised_by(approval)):
        return True
    return approval_raised_with_key_of(approval=approval, user=user)


def approvals_of_team(
    *, team_id: uuid.UUID, status: str | None = None, tool_name: str | None = None
) -> QuerySet[Approval]:
    approvals = Approval.objects.filter(team_id=team_id)
    if status:
        approvals = approvals.filter(status=status)
    if tool_name:
        approvals = approvals.filter(tool_name=tool_name)
    return approvals.order_by("-created_at")


@dataclass(frozen=True, slots=True)
class QueueFilters:
    team_slug: str | None = None
    group: str | None = None
    tool_name: str | None = None


def _in_sql() -> bool:
    """Eligibility is read in SQL on PostgreSQL; elsewhere (SQLite: group slugs sit in a JSON list
    it cannot query by element) row by row in Python, which is fine for a short queue."""
    return connection.vendor == "postgresql"


# The most rows the browser queue lists (the oldest first); its total and filters cover all.
QUEUE_PAGE = 200
# The most pending approvals a count reads (the nav badge on every page, the queue's totals, the
# overview's panel): past it the count shows "1,000+", so its cost is bounded however many wait
# (as the explorer's counts stop at 20,000; 100,000 pending: benchmarks/scale_10m.py).
PENDING_COUNT_LIMIT = 1000


class CappedCount(int):
    """A count that stopped at its limit: the number (``limit`` when ``capped``), shown as
    "1,000+" when there are more. An ``int``, so it compares, sums and pluralizes as one."""

    capped: bool

    def __new__(cls, value: int, *, capped: bool = False) -> CappedCount:
        count = super().__new__(cls, value)
        count.capped = capped
        return count

    @classmethod
    def of(cls, counted: int, *, limit: int) -> CappedCount:
        """``counted`` rows read with ``LIMIT limit + 1``."""
        return cls(min(counted, limit), capped=counted > limit)

    def __str__(self) -> str:
        return f"{int(self):,}+" if self.capped else str(int(self))

    __repr__ = __str__


def _capped_count(pending: QuerySet[Approval], limit: int) -> CappedCount:
    # COUNT over a LIMITed subquery (Django counts a sliced queryset that way): it stops at limit + 1.
    return CappedCount.of(pending.order_by()[: limit + 1].count(), limit=limit)


def _pending_for(eligibility: _Eligibility, filters: QueueFilters) -> QuerySet[Approval]:
    pending = Approval.objects.filter(team_id__in=eligibility.team_ids(), status=Approval.Status.PENDING)
    if filters.team_slug:
        pending = pending.filter(team__slug=filters.team_slug)
    if filters.tool_name:
        pending = pending.filter(tool_name=filters.tool_name)
    if _in_sql():
        pending = pending.filter(eligibility.q())
        if filters.group:
            pending = pending.filter(approver_groups__contains=[filters.group])
    return pending


def _decidable(
    eligibility: _Eligibility, filters: QueueFilters, approvals: Iterable[Approval]
) -> list[Approval]:
    return [
        approval
        for approval in approvals
        if eligibility.may_decide(approval)
        and (not filters.group or filters.group in (approval.approver_groups or []))
    ]


def approvals_queue_for(
    *, user: User, filters: QueueFilters | None = None, limit: int | None = None
) -> list[Approval]:
    """Pending approvals ``user`` may decide, oldest first (the browser queue), at most ``limit``."""
    filters = filters or QueueFilters()
    eligibility = _Eligibility.of(user)
    pending = _pending_for(eligibility, filters).select_related("team").order_by("created_at", "id")
    if _in_sql():
        return list(pending[:limit] if limit is not None else pending)
    return _decidable(eligibility, filters, pending)[:limit]


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """The whole queue of one person (no filters), without its rows: how many, the next
    deadline, and the groups, tools and teams its filters offer."""

    total: CappedCount
    next_deadline: datetime | None
    groups: list[str]
    tools: list[str]
    teams: list[str]


def approvals_queue_summary_for(*, user: User, limit: int | None = None) -> QueueSummary:
    """``QueueSummary`` of ``user``'s queue: on PostgreSQL aggregate queries over the pending
    rows, whatever the queue's length (the total counted up to ``limit``, the next deadline the
    first of the deadline index); elsewhere from the rows."""
    limit = PENDING_COUNT_LIMIT if limit is None else limit
    eligibility = _Eligibility.of(user)
    pending = _pending_for(eligibility, QueueFilters())
    if not _in_sql():
        rows = _decidable(eligibility, QueueFilters(), pending.select_related("team"))
        return QueueSummary(
            total=CappedCount.of(len(rows), limit=limit),
            next_deadline=min((a.expires_at for a in rows), default=None),
            groups=sorted({str(g) for a in rows for g in (a.approver_groups or [])}),
            tools=sorted({a.tool_name for a in rows}),
            teams=sorted({a.team.slug for a in rows}),
        )
    unordered = pending.order_by()  # (DISTINCT over the values alone, not the default ordering)
    groups = unordered.annotate(group=_GroupSlugs(F("approver_groups"))).values_list("group", flat=True)
    return QueueSummary(
        total=_capped_count(pending, limit),
        next_deadline=pending.order_by("expires_at").values_list("expires_at", flat=True).first(),
        groups=sorted(groups.distinct()),
        tools=sorted(unordered.values_list("tool_name", flat=True).distinct()),
        # One EXISTS probe per team (it stops at the first waiting row), not a DISTINCT over all.
        teams=sorted(
            Team.objects.filter(pk__in=eligibility.team_ids())
            .filter(Exists(unordered.filter(team_id=OuterRef("pk"))))
            .values_list("slug", flat=True)
        ),
    )


class _GroupSlugs(Func):
    """PostgreSQL: one row per element of an approval's JSON list of groups (none for a
    non-list)."""

    template = (
        "jsonb_array_elements_text(CASE WHEN jsonb_typeof(%(expressions)s) = 'array' "
        "THEN %(expressions)s ELSE '[]'::jsonb END)"
    )
    output_field = TextField()


def approvals_queue_count_for(*, user: User, filters: QueueFilters, limit: int | None = None) -> CappedCount:
    """How many of ``user``'s pending approvals match ``filters`` (the queue's "n of total"),
    counted up to ``limit`` (``PENDING_COUNT_LIMIT``)."""
    limit = PENDING_COUNT_LIMIT if limit is None else limit
    eligibility = _Eligibility.of(user)
    pending = _pending_for(eligibility, filters)
    if _in_sql():
        return _capped_count(pending, limit)
    return CappedCount.of(len(_decidable(eligibility, filters, pending)), limit=limit)


def approvals_pending_count_for(*, user: User, limit: int | None = None) -> CappedCount:
    """The nav badge: the queue's length, counted up to ``limit`` ("1,000+" past it: it is on
    every page), in SQL on PostgreSQL; elsewhere reading only what eligibility needs."""
    limit = PENDING_COUNT_LIMIT if limit is None else limit
    eligibility = _Eligibility.of(user)
    pending = Approval.objects.filter(
        team_id__in=eligibility.team_ids(), status=Approval.Status.PENDING, expires_at__gt=timezone.now()
    )
    if _in_sql():
        return _capped_count(pending.filter(eligibility.q()), limit)
    pending = pending.only("id", "team_id", "approver_groups")
    counted = 0
    for approval in pending.iterator():
        counted += eligibility.may_decide(approval)
        if counted > limit:
            break
    return CappedCount.of(counted, limit=limit)


def approval_team_ids_of(*, user: User) -> set[uuid.UUID]:
    """The teams the user belongs to or approves for."""
    team_ids = set(Membership.objects.filter(user=user).values_list("team_id", flat=True))
    team_ids |= set(ApproverGroup.objects.filter(members=user).values_list("team_id", flat=True))
    return team_ids


def approvals_resolved_for(*, user: User, limit: int = 100) -> QuerySet[Approval]:
    """History: resolved approvals of the teams the user belongs to or approves for, newest first."""
    team_ids = approval_team_ids_of(user=user)
    visible = Approval.objects.all() if user.is_staff else Approval.objects.filter(team_id__in=team_ids)
    return (
        visible.exclude(status=Approval.Status.PENDING)
        .select_related("team")
        .order_by("-resolved_at")[:limit]
    )


def approval_trail(*, approval: Approval) -> list[ApprovalEvent]:
    return list(approval.events.order_by("created_at", "id"))


# The first line of every trail: the agent's call that raised the approval (it is the approval
# row itself, not an ApprovalEvent).
RAISED = "raised"


@dataclass(frozen=True, slots=True)
class TrailEntry:
    """One line of an approval's trail as the API tells it: ``action`` is ``raised`` or an
    ``ApprovalEvent.Action`` (approve, deny, approved, expired, escalated, refused)."""

    action: str
    actor: str
    comment: str
    channel: str
    created_at: datetime


def approval_trail_entries(*, approval: Approval) -> list[TrailEntry]:
    """Everything that happened to ``approval``, in order: raised, then votes, escalations,
    refusals and the outcome (``GET /v1/approvals/{id}/trail``). Two queries: the key that made
    the call, and the events. The raise names the key the way the trail names keys
    (``ApiKeyPrincipal.display_name``); a call whose key is gone reads as the agent's."""
    key = None
    if approval.decision_id is not None:
        from audit.models import DecisionRecord

        key_id = DecisionRecord.objects.filter(pk=approval.decision_id).values("api_key_id")[:1]
        key = ApiKey.objects.filter(pk=Subquery(key_id)).values("name", "prefix").first()
    raised = TrailEntry(
        action=RAISED,
        actor=f"API key {key['name']} ({key['prefix']}…)" if key else "the agent's call",
        comment=approval.reason,
        channel=ApprovalEvent.Channel.API,
        created_at=approval.created_at,
    )
    return [raised] + [
        TrailEntry(
            action=event.action,
            actor=event.actor_name,
            comment=event.comment,
            channel=event.channel,
            created_at=event.created_at,
        )
        for event in approval_trail(approval=approval)
    ]


def approval_session_calls(*, approval: Approval, limit: int = 20) -> list[Mapping[str, object]]:
    """The agent's recent calls in the approval's session, from the decision record."""
    from audit.models import DecisionRecord

    session_id = approval.context.get("session_id") if isinstance(approval.context, dict) else None
    if not isinstance(session_id, str) or not session_id:
        return []
    return list(
        DecisionRecord.objects.filter(team_id=approval.team_id, context__session_id=session_id)
        .order_by("-created_at")
        .values("id", "tool_name", "decision", "rule_id", "created_at")[:limit]
    )


def approval_seconds_to_decide(approval: Approval) -> float | None:
    if approval.resolved_at is None:
        return None
    return (approval.resolved_at - approval.created_at).total_seconds()


def approval_time_left(approval: Approval, now: datetime) -> float:
    return max(0.0, (approval.expires_at - now).total_seconds())


def approval_get_visible_to(*, user: User, approval_id: uuid.UUID) -> Approval:
    """The approval, for a person who may see it: staff, a member of its team, or in one of the
    team's approver groups (who may be asked to decide without being members). Anyone else gets
    NotFound, exactly as for an id that does not exist."""
    approvals = Approval.objects.select_related("team")
    if not user.is_staff:
        approvals = approvals.filter(
            Q(team_id__in=Membership.objects.filter(user=user).values("team_id"))
            | Q(team_id__in=ApproverGroup.objects.filter(members=user).values("team_id"))
        )
    try:
        return approvals.get(pk=approval_id)
    except Approval.DoesNotExist as exc:
        raise NotFound("approval not found") from exc


def approvals_pending_total() -> int:
    """Pending approvals of every team (/metrics): counted on the pending rows' partial index."""
    return Approval.objects.filter(status=Approval.Status.PENDING).count()


def approval_statuses_of(approval_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The status of each of these approvals that exists (any team: the ids are the caller's own
    holds)."""
    return dict(Approval.objects.filter(pk__in=approval_ids).values_list("pk", "status"))
