"""Reads of the decision record: the SDK's list, stats and detail calls; the chains; and the
events rebuilt from them, for consumers that resume."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Q, QuerySet

from audit.chain import ChainLink
from audit.events import decision_events, trail_event
from audit.models import AuditEvent, ChainArchive, ChainHead, ChainStream, DecisionRecord, Verification
from common.errors import NotFound
from common.events import Event


@dataclass(frozen=True, slots=True)
class DecisionFilters:
    tool_name: str | None = None
    decision: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    # The explorer's (dashboards/filters.py); the API's list and export pass none of them.
    rule_id: str | None = None
    model: str | None = None
    environment: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    source: str | None = None


# DecisionFilters attribute -> column, for the ones compared by equality.
_EQUALITY_FILTERS = (
    "tool_name",
    "decision",
    "rule_id",
    "model",
    "environment",
    "agent_id",
    "session_id",
    "source",
)


def decisions_of_team(*, team_id: uuid.UUID, filters: DecisionFilters) -> QuerySet[DecisionRecord]:
    queryset = DecisionRecord.objects.filter(team_id=team_id)
    equal = {name: getattr(filters, name) for name in _EQUALITY_FILTERS if getattr(filters, name)}
    if equal:
        queryset = queryset.filter(**equal)
    if filters.start:
        queryset = queryset.filter(created_at__gte=filters.start)
    if filters.end:
        queryset = queryset.filter(created_at__lte=filters.end)
    return queryset.order_by("-created_at", "-id")


def decision_stats(*, team_id: uuid.UUID, filters: DecisionFilters) -> dict[str, int]:
    counts = (
        decisions_of_team(team_id=team_id, filters=filters)
        .order_by()
        .aggregate(
            total=Count("id"),
            allowed=Count("id", filter=Q(decision=DecisionRecord.Outcome.ALLOW)),
            denied=Count("id", filter=Q(decision=DecisionRecord.Outcome.DENY)),
            requireApproval=Count("id", filter=Q(decision=DecisionRecord.Outcome.REQUIRE_APPROVAL)),
        )
    )
    return {key: int(value or 0) for key, value in counts.items()}


# The explorer's page size, and how many of the newest matching rows its counts read at most:
# counting is linear in it (10M benchmark, unfiltered: 100k 158 ms p95, 20k 32 ms), and past it
# the page says "more than 20,000" with the outcomes of the newest 20,000.
EXPLORER_PAGE_SIZE = 50
EXPLORER_COUNT_LIMIT = 20_000
# A page of rows never carries the chain columns (the record text can be large).
_EXPLORER_DEFERRED = ("record", "prev_hash", "hash", "arguments")


@dataclass(frozen=True, slots=True)
class ExplorerPage:
    rows: list[DecisionRecord]
    # ``?before=`` of the next older page, or None when these are the oldest.
    older_before: int | None


# How long after its created_at a decision can be numbered at most. The runtime stamps the time
# when it decides and the writer numbers the row when its batch commits, milliseconds later
# (the answer waits for the commit); generous, for clock skew between web processes.
SEQUENCE_LAG = timedelta(minutes=15)


def _sequence_bounds(*, team_id: uuid.UUID, filters: DecisionFilters) -> tuple[int | None, int | None]:
    """Sequences every row of the filters' time range lies strictly between (None: no bound),
    from two one-row reads of ``decision_team_time``. A row stamped before ``start -
    SEQUENCE_LAG`` was numbered before any row of the range; one stamped after ``end +
    SEQUENCE_LAG``, after all of them. Without the bounds a day a fortnight back is found by
    walking the sequence index back from today: 4.2M rows read on the 10M benchmark, 9.9 s."""
    rows = DecisionRecord.objects.filter(team_id=team_id)
    low = high = None
    if filters.start:
        low = (
            rows.filter(created_at__lt=filters.start - SEQUENCE_LAG)
            .order_by("-created_at")
            .values_list("sequence", flat=True)
            .first()
        )
    if filters.end:
        high = (
            rows.filter(created_at__gt=filters.end + SEQUENCE_LAG)
            .order_by("created_at")
            .values_list("sequence", flat=True)
            .first()
        )
    return low, high


def _explorer_rows(*, team_id: uuid.UUID, filters: DecisionFilters) -> QuerySet[DecisionRecord]:
    """``decisions_of_team`` with a time range also bracketed by sequence (the same rows: the
    ``created_at`` conditions stay), so the explorer's sequence-ordered scans start near it."""
    queryset = decisions_of_team(team_id=team_id, filters=filters)
    low, high = _sequence_bounds(team_id=team_id, filters=filters)
    if low is not None:
        queryset = queryset.filter(sequence__gt=low)
    if high is not None:
        queryset = queryset.filter(sequence__lt=high)
    return queryset


def decisions_of_team_in_sequence(
    *, team_id: uuid.UUID, filters: DecisionFilters
) -> QuerySet[DecisionRecord]:
    """``decisions_of_team`` for reads in sequence order (the explorer, the export): the same rows,
    a time range bracketed by sequence too, so the scan starts at the range, not at the chain's
    end (the export's first batch from a start date 15 days back: 7-9 s on the 10M benchmark, past
    the request's database deadline, without it; benchmarks/scale_10m.py)."""
    return _explorer_rows(team_id=team_id, filters=filters)


def explorer_page(
    *, team_id: uuid.UUID, filters: DecisionFilters, before: int | None = None, size: int = EXPLORER_PAGE_SIZE
) -> ExplorerPage:
    """The team's matching decisions, newest first, with ``sequence < before`` (keyset on the
    team's gapless sequence: ``decision_x_*_seq`` indexes end in it, so a page is a backward
    range scan of ``size + 1`` entries however deep it is)."""
    queryset = _explorer_rows(team_id=team_id, filters=filters).order_by("-sequence")
    if before is not None:
        queryset = queryset.filter(sequence__lt=before)
    rows = list(queryset.defer(*_EXPLORER_DEFERRED)[: size + 1])
    older = rows[size - 1].sequence if len(rows) > size else None
    return ExplorerPage(rows=rows[:size], older_before=older)


def explorer_newer_before(
    *, team_id: uuid.UUID, filters: DecisionFilters, before: int, size: int = EXPLORER_PAGE_SIZE
) -> int | None:
    """``?before=`` of the page just newer than the one at ``before`` (None: that is the first page).
    That page is the ``size`` matching rows at or after ``before`` (oldest first here), so it ends
    before the one past the last of them; when no more match above them, it is the first page."""
    newer = list(
        _explorer_rows(team_id=team_id, filters=filters)
        .filter(sequence__gte=before)
        .order_by("sequence")
        .values_list("sequence", flat=True)[: size + 1]
    )
    return newer[size - 1] + 1 if len(newer) > size else None


@dataclass(frozen=True, slots=True)
class OutcomeCounts:
    total: int
    allow: int
    deny: int
    require_approval: int
    # True: more than EXPLORER_COUNT_LIMIT match, and the counts are of the newest that many.
    capped: bool


def explorer_counts(
    *, team_id: uuid.UUID, filters: DecisionFilters, limit: int = EXPLORER_COUNT_LIMIT
) -> OutcomeCounts:
    """The matching decisions by outcome, reading at most the newest ``limit`` + 1 of them: an
    index-only scan of a ``decision_x_*_seq`` index (``decision`` is in each), so the cost is
    bounded by ``limit`` and not by the table (10M rows: see benchmarks/explorer_queries.py)."""
    newest = (
        _explorer_rows(team_id=team_id, filters=filters)
        .order_by("-sequence")
        .values_list("decision", "sequence")[: limit + 1]
    )
    inner, params = newest.query.sql_with_params()
    # A GROUP BY over a LIMITed subquery: the ORM has no subquery in FROM. The row past the
    # limit only says there are more: it is the oldest read, uncounted from its outcome.
    statement = f"SELECT newest.decision, COUNT(*), MIN(newest.sequence) FROM ({inner}) AS newest GROUP BY newest.decision"
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        groups = cursor.fetchall()
    counts = {decision: int(n) for decision, n, _ in groups}
    total = sum(counts.values())
    capped = total > limit
    if capped:
        oldest_outcome = min(groups, key=lambda g: g[2])[0]
        counts[oldest_outcome] -= 1
        total = limit
    return OutcomeCounts(
        total=total,
        allow=counts.get(DecisionRecord.Outcome.ALLOW, 0),
        deny=counts.get(DecisionRecord.Outcome.DENY, 0),
        require_approval=counts.get(DecisionRecord.Outcome.REQUIRE_APPROVAL, 0),
        capped=capped,
    )


def decision_get_for_team(*, team_id: uuid.UUID, decision_id: uuid.UUID) -> DecisionRecord:
    try:
        return DecisionRecord.objects.get(pk=decision_id, team_id=team_id)
    except DecisionRecord.DoesNotExist as exc:
        raise NotFound("decision not found") from exc


# --- the chain ---------------------------------------------------------------------------------

CHAIN_READ_BATCH = 5000


def chain_model(stream: str) -> type[DecisionRecord] | type[AuditEvent]:
    return DecisionRecord if stream == ChainStream.DECISIONS else AuditEvent


def chain_links(*, team_id: uuid.UUID, stream: str, since: int = 1) -> Iterator[ChainLink]:
    """The team's chain entries from ``since`` on, in sequence order, read in keyset batches
    (constant memory however long the chain)."""
    model = chain_model(stream)
    after = since - 1
    while True:
        batch = list(
            model.objects.filter(team_id=team_id, sequence__gt=after)
            .order_by("sequence")
            .values_list("sequence", "record", "prev_hash", "hash")[:CHAIN_READ_BATCH]
        )
        for sequence, record, prev_hash, digest in batch:
            yield ChainLink(sequence, record, prev_hash, digest)
        if len(batch) < CHAIN_READ_BATCH:
            return
        after = batch[-1][0]


def chain_heads_of_team(*, team_id: uuid.UUID) -> dict[str, int]:
    """The newest sequence of each of the team's streams (ChainStream values), 0 for a stream
    with no entry yet: where a consumer that starts now (a new webhook endpoint) begins."""
    heads = dict(ChainHead.objects.filter(team_id=team_id).values_list("stream", "sequence"))
    return {stream: heads.get(stream, 0) for stream in ChainStream.values}


def chain_anchor(*, team_id: uuid.UUID, stream: str) -> tuple[int, str]:
    """Where the chain in the database starts: sequence 1 after the genesis hash, or, once its
    start was archived, the entry after the last archived one and that entry's hash."""
    archived = (
        ChainArchive.objects.filter(team_id=team_id, stream=stream)
        .order_by("-through_sequence")
        .values_list("through_sequence", "through_hash")
        .first()
    )
    if archived is None:
        return 1, ""
    return archived[0] + 1, archived[1]


def chain_entry_hash(*, team_id: uuid.UUID, stream: str, sequence: int) -> str | None:
    return (
        chain_model(stream)
        .objects.filter(team_id=team_id, sequence=sequence)
        .values_list("hash", flat=True)
        .first()
    )


def verification_latest(*, team_id: uuid.UUID, stream: str) -> Verification | None:
    return Verification.objects.filter(team_id=team_id, stream=stream).order_by("-ran_at").first()


# --- events, from the chains -------------------------------------------------------------------

TEAM_EVENTS_LIMIT_MAX = 1000


def team_events_after(
    *, team_id: uuid.UUID, stream: str, after_sequence: int, limit: int = 100
) -> list[Event]:
    """The team's events in ``stream`` after ``after_sequence``, in order, rebuilt from the chain
    entries (the durable record; the event path only notifies): what a consumer that may have
    missed a notification reads to resume from the last sequence it saw.

    At most ``limit`` entries (up to ``TEAM_EVENTS_LIMIT_MAX``); a decision that raised an
    approval gives two events at its sequence, so resume with the last event's sequence. Entries
    archived out of the database (``chain_anchor``) are not here any more: a consumer further
    behind than the archive cut resumes at the cut."""
    limit = max(0, min(limit, TEAM_EVENTS_LIMIT_MAX))
    if stream == ChainStream.DECISIONS:
        rows = (
            DecisionRecord.objects.filter(team_id=team_id, sequence__gt=after_sequence)
            .order_by("sequence")
            .values("id", "team_id", "sequence", "created_at", "decision", "approval_id")[:limit]
        )
        return [event for row in rows for event in decision_events(row)]
    if stream == ChainStream.EVENTS:
        entries = (
            AuditEvent.objects.filter(team_id=team_id, sequence__gt=after_sequence)
            .order_by("sequence")
            .values_list("sequence", "kind", "created_at", "record")[:limit]
        )
        return [
            trail_event(
                team_id=team_id,
                sequence=sequence,
                kind=kind,
                details=json.loads(record).get("details") or {},
                occurred_at=created_at,
            )
            for sequence, kind, created_at, record in entries
        ]
    raise ValueError(f"no stream {stream!r}")
