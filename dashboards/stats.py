"""Reads of the team overview (dashboard:overview): decisions over time by outcome, validate
latency, pending approvals, what was denied and which rules fired, where calls came from, and the
active policy. Each read is one bounded query on a window of the team's recent rows.

Why the queries look as they do (measured on PostgreSQL, README/notes "Overview"):

* Every decision read starts ``team_id = … AND created_at >= …`` so it walks one of
  DecisionRecord's ``(team, …, -created_at)`` indexes, never the whole table.
* Outcome counts also say ``decision IN (allow, deny, require_approval)``: with that, PostgreSQL
  runs three range scans of ``decision_team_outcome_time`` (team, decision, created_at), which
  holds every column the query reads, so it needs no table rows (an index-only scan).
* Time buckets are computed in SQL (``_EpochBucket``: whole seconds since the epoch divided by
  the bucket's width, per backend), so the database returns one row per bucket and outcome.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, FloatField, Func, IntegerField, QuerySet, TextField, Value
from django.db.models.expressions import Expression
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Coalesce, NullIf
from django.utils import timezone

from approvals.models import Approval
from approvals.selectors import approvals_of_team
from audit.models import DecisionRecord
from policies.models import RuleSetPublication, RuleSetVersion
from policies.selectors import rule_set_publications_of_team, rule_set_versions_of_team

OUTCOMES: tuple[str, ...] = tuple(DecisionRecord.Outcome.values)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# The hour is drawn per minute (60 bars); the day per 15 minutes (96 bars): a burst of a few
# minutes still shows as its own bar, while hourly bars (24) would flatten it into its hour and
# per-minute bars (1440) would be thinner than a pixel on a phone.
HOUR_STEP = timedelta(minutes=1)
DAY_STEP = timedelta(minutes=15)
TOP_LIMIT = 10
# SQLite has no percentile function: its percentiles are over the newest this many server
# decisions of the window (PostgreSQL's percentile_cont reads them all).
SQLITE_PERCENTILE_SAMPLE = 10_000
NOT_SET = "(not set)"

logger = logging.getLogger(__name__)


# --- decisions over time -------------------------------------------------------------------------


class _EpochBucket(Func):
    """``floor(epoch seconds of the expression / width)``: the index of the time bucket a row
    falls in, the same integer on both backends (timezone-free, aligned to the epoch, so
    15-minute buckets start on the quarter hour)."""

    output_field = IntegerField()

    def __init__(self, expression: Any, *, width: int) -> None:
        super().__init__(expression, width=int(width))

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="floor(extract(epoch from %(expressions)s) / %(width)d)::bigint",
            **extra,
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # strftime('%s'): whole seconds since the epoch of Django's stored UTC text. The doubled
        # percent signs survive both the template and the cursor's placeholder conversion.
        return self.as_sql(
            compiler,
            connection,
            template="(CAST(strftime('%%%%s', %(expressions)s) AS INTEGER) / %(width)d)",
            **extra,
        )


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class Series:
    """Decisions per bucket and outcome over one window, oldest bucket first; the last one holds now."""

    step: timedelta
    buckets: tuple[Bucket, ...]

    @property
    def start(self) -> datetime:
        return self.buckets[0].start

    @property
    def end(self) -> datetime:
        return self.buckets[-1].start + self.step

    @property
    def totals(self) -> dict[str, int]:
        return {outcome: sum(b.counts[outcome] for b in self.buckets) for outcome in OUTCOMES}

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def peak(self) -> int:
        return max((b.total for b in self.buckets), default=0)


def _window(*, now: datetime, span: timedelta, step: timedelta) -> tuple[int, int]:
    """The first and last bucket index of the ``span`` ending with the bucket that holds ``now``."""
    width = int(step.total_seconds())
    last = math.floor(now.timestamp()) // width
    return last - int(span / step) + 1, last


def _moment(index: int, step: timedelta, tz: Any) -> datetime:
    return datetime.fromtimestamp(index * int(step.total_seconds()), tz=tz)


# Counting a window: one query for the hour (a few thousand rows). The day (~300k rows a day for
# a busy team) is counted per quarter-hour: each quarter-hour already over is counted once and
# kept in Django's cache (Redis, shared by the web processes) on its own key, and the current one
# is read every time. So when the window moves on, one new quarter-hour is counted, not the day
# again (10M benchmark: the day panels' first load after each quarter-hour was 0.5-1.9 s each).
# The record is append-only and stamped by the server when decided, so a quarter-hour that is
# over does not change once its last writes have committed (SETTLED_AFTER).
SETTLED_AFTER = timedelta(seconds=10)
# A quarter-hour stays in the day's window for a day: kept a little longer than that.
CACHE_SECONDS = int((DAY + timedelta(hours=1)).total_seconds())

CountPairs = Callable[[datetime, datetime | None], Iterable[tuple[Hashable, int]]]


def _counted(
    *, key: str, now: datetime, span: timedelta, step: timedelta, count: CountPairs
) -> Counter[Hashable]:
    """``count(since, until)``'s (key, n) pairs over the last ``span`` (``step`` buckets ending
    with the current one); for a span longer than an hour, each bucket that is over comes from
    the cache, counted on its own the first time."""
    first, last = _window(now=now, span=span, step=step)
    tz = now.tzinfo or timezone.get_current_timezone()
    since, current = _moment(first, step, tz), _moment(last, step, tz)
    if span <= HOUR or now - current < SETTLED_AFTER:
        return Counter(dict(count(since, None)))
    width = int(step.total_seconds())
    keys = {f"overview:{key}:{width}:{i}": i for i in range(first, last)}
    cached = _cache_get_many(list(keys))
    total: Counter[Hashable] = Counter()
    fresh: dict[str, Counter[Hashable]] = {}
    for cache_key, i in keys.items():
        bucket = cached.get(cache_key)
        if not isinstance(bucket, Counter):
            bucket = Counter(dict(count(_moment(i, step, tz), _moment(i + 1, step, tz))))
            fresh[cache_key] = bucket
        total.update(bucket)
    if fresh:
        _cache_set_many(fresh)
    total.update(Counter(dict(count(current, None))))
    return total


def _cache_get_many(keys: list[str]) -> dict[str, Any]:
    try:
        return cache.get_many(keys)
    except Exception:  # the cache is an optimisation: without it, count everything
        logger.warning("overview.cache_unavailable keys=%s..", keys[:1], exc_info=True)
        return {}


def _cache_set_many(values: dict[str, Counter[Hashable]]) -> None:
    try:
        cache.set_many(values, CACHE_SECONDS)
    except Exception:
        logger.warning("overview.cache_unavailable keys=%s..", list(values)[:1], exc_info=True)


def _decisions(team_id: uuid.UUID, since: datetime, until: datetime | None) -> QuerySet[DecisionRecord]:
    rows = DecisionRecord.objects.filter(team_id=team_id, created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    return rows.order_by()


def decision_series(
    *, team_id: uuid.UUID, now: datetime | None = None, span: timedelta = HOUR, step: timedelta = HOUR_STEP
) -> Series:
    """The team's decisions per ``step`` and outcome over the last ``span`` (empty buckets
    included, so a chart has every bar). All sources count: a client decision was a call too."""
    now = now or timezone.now()
    width = int(step.total_seconds())

    def count(since: datetime, until: datetime | None) -> Iterable[tuple[Hashable, int]]:
        rows = (
            _decisions(team_id, since, until)
            .filter(decision__in=OUTCOMES)
            .annotate(bucket=_EpochBucket(F("created_at"), width=width))
            .values("bucket", "decision")
            .annotate(n=Count("*"))
            .values_list("bucket", "decision", "n")
        )
        return (((bucket, outcome), n) for bucket, outcome, n in rows)

    counted = _counted(key=f"series:{team_id.hex}", now=now, span=span, step=step, count=count)
    first, last = _window(now=now, span=span, step=step)
    tz = now.tzinfo or timezone.get_current_timezone()
    return Series(
        step=step,
        # a row stamped past now (clock skew) has no bar
        buckets=tuple(
            Bucket(_moment(i, step, tz), {outcome: counted[(i, outcome)] for outcome in OUTCOMES})
            for i in range(first, last + 1)
        ),
    )


def decision_totals_of_teams(
    *, team_ids: Sequence[uuid.UUID], now: datetime | None = None
) -> dict[uuid.UUID, dict[str, int]]:
    """Each team's decisions per outcome over the day (the day chart's window), in one query
    for all the teams (the home page's small counts: a window, never a count of the table)."""
    ids = sorted(team_ids)

    def count(since: datetime, until: datetime | None) -> Iterable[tuple[Hashable, int]]:
        rows = DecisionRecord.objects.filter(team_id__in=ids, decision__in=OUTCOMES, created_at__gte=since)
        if until is not None:
            rows = rows.filter(created_at__lt=until)
        pairs = rows.order_by().values("team_id", "decision").annotate(n=Count("*"))
        return (((team, outcome), n) for team, outcome, n in pairs.values_list("team_id", "decision", "n"))

    digest = hashlib.sha256(",".join(i.hex for i in ids).encode()).hexdigest()[:32]
    counted = _counted(key=f"teams:{digest}", now=now or timezone.now(), span=DAY, step=DAY_STEP, count=count)
    return {team_id: {o: counted[(team_id, o)] for o in OUTCOMES} for team_id in team_ids}


# --- latency -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    """Validate's recorded latency (ms) over a window: server decisions only, since a client
    decision's latency is the SDK's own and inline rules are the caller's."""

    count: int
    p50: float | None
    p99: float | None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` percentile of sorted ``values`` by linear interpolation between the two
    nearest ranks: what PostgreSQL's percentile_cont computes, so both backends agree."""
    if not values:
        return None
    position = fraction * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


# The day's percentiles (a sort of up to ~140k values; they hardly move with one more call) are
# recomputed at most this often per team, once the window holds DAY_LATENCY_CACHED_FROM rows
# (fewer are cheap to sort, and a handful of calls must show at once); the hour's every time.
DAY_LATENCY_SECONDS = 30
DAY_LATENCY_CACHED_FROM = 1000


def validate_latency(*, team_id: uuid.UUID, now: datetime | None = None, span: timedelta = HOUR) -> Latency:
    """p50 and p99 of ``latency_ms`` of the team's server decisions in the last ``span``.

    PostgreSQL: ``percentile_cont`` over every row of the window, in the database. SQLite (no
    percentile function; development and tests): the newest SQLITE_PERCENTILE_SAMPLE rows of the
    window, sorted in Python; the same interpolation, so on windows under the sample the numbers
    are the same on both. Spans over an hour of DAY_LATENCY_CACHED_FROM rows or more are cached
    for DAY_LATENCY_SECONDS."""
    now = now or timezone.now()
    if span <= HOUR:
        return _latency(team_id, now - span)
    key = f"overview:latency:{team_id.hex}:{int(span.total_seconds())}:{int(now.timestamp()) // DAY_LATENCY_SECONDS}"
    try:
        cached = cache.get(key)
    except Exception:
        logger.warning("overview.cache_unavailable key=%s", key, exc_info=True)
        cached = None
    if isinstance(cached, Latency):
        return cached
    latency = _latency(team_id, now - span)
    if latency.count < DAY_LATENCY_CACHED_FROM:
        return latency
    try:
        cache.set(key, latency, DAY_LATENCY_SECONDS * 2)
    except Exception:
        logger.warning("overview.cache_unavailable key=%s", key, exc_info=True)
    return latency


def _latency(team_id: uuid.UUID, since: datetime) -> Latency:
    rows = DecisionRecord.objects.filter(
        team_id=team_id, created_at__gte=since, source=DecisionRecord.Source.SERVER
    ).order_by()
    if _database_has_percentiles():
        result = rows.aggregate(
            count=Count("*"),
            p50=_PercentileCont(0.5, "latency_ms"),
            p99=_PercentileCont(0.99, "latency_ms"),
        )
        return Latency(int(result["count"]), result["p50"], result["p99"])
    sample = sorted(
        rows.order_by("-created_at").values_list("latency_ms", flat=True)[:SQLITE_PERCENTILE_SAMPLE]
    )
    return Latency(len(sample), percentile(sample, 0.5), percentile(sample, 0.99))


def _database_has_percentiles() -> bool:
    """PostgreSQL computes percentiles itself; elsewhere validate_latency samples."""
    return connection.vendor == "postgresql"


class _PercentileCont(Func):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    contains_aggregate = True
    output_field = FloatField()
    template = "percentile_cont(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, fraction: float, expression: str) -> None:
        super().__init__(F(expression), fraction=float(fraction))


# --- top lists -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ranked:
    label: str
    count: int
    detail: str = ""  # e.g. a rule's name beside its id


def _ranked(counted: Counter[Hashable], limit: int) -> list[tuple[Any, int]]:
    return sorted(counted.items(), key=lambda item: (-item[1], str(item[0])))[:limit]


def top_denied_tools(
    *, team_id: uuid.UUID, now: datetime | None = None, limit: int = TOP_LIMIT
) -> list[Ranked]:
    """The tools denied most often over the day (index: team, decision, created_at)."""

    def count(since: datetime, until: datetime | None) -> Iterable[tuple[Hashable, int]]:
        rows = _decisions(team_id, since, until).filter(decision=DecisionRecord.Outcome.DENY)
        return rows.values("tool_name").annotate(n=Count("*")).values_list("tool_name", "n")

    counted = _counted(
        key=f"denied:{team_id.hex}", now=now or timezone.now(), span=DAY, step=DAY_STEP, count=count
    )
    return [Ranked(str(tool), n) for tool, n in _ranked(counted, limit)]


def top_rules(*, team_id: uuid.UUID, now: datetime | None = None, limit: int = TOP_LIMIT) -> list[Ranked]:
    """The rules that decided most calls over the day (a decision no rule matched, the default
    action, has no rule id and is not counted)."""

    def count(since: datetime, until: datetime | None) -> Iterable[tuple[Hashable, int]]:
        rows = _decisions(team_id, since, until).exclude(rule_id="")
        pairs = rows.values("rule_id", "rule_name").annotate(n=Count("*"))
        return (((rule_id, name), n) for rule_id, name, n in pairs.values_list("rule_id", "rule_name", "n"))

    counted = _counted(
        key=f"rules:{team_id.hex}", now=now or timezone.now(), span=DAY, step=DAY_STEP, count=count
    )
    by_rule: Counter[Hashable] = Counter()
    names: dict[str, str] = {}  # a rule's name (the smallest, should it have changed)
    for pair, n in counted.items():
        rule_id, name = cast(tuple[str, str], pair)
        by_rule[rule_id] += n
        if name and (not names.get(rule_id) or name < names[rule_id]):
            names[rule_id] = name
    return [
        Ranked(str(rule_id), n, "" if names.get(rule_id, rule_id) == rule_id else names[rule_id])
        for rule_id, n in _ranked(by_rule, limit)
    ]


# Where a call's model and environment are read from. Until DecisionRecord has columns of these
# names (the explorer's migration), they are context paths: ``context.<name>``, else
# ``context.custom.<name>`` (where the SDK puts what the agent adds; approvals.display.context_value
# reads them the same way). Once the column exists it is used instead, with no change here.
CONTEXT_DIMENSIONS = ("model", "environment")


def _dimension(name: str) -> Expression:
    if name in {f.name for f in DecisionRecord._meta.concrete_fields}:
        return NullIf(F(name), Value(""))
    top = NullIf(KeyTextTransform(name, "context"), Value(""), output_field=TextField())
    custom = NullIf(
        KeyTextTransform(name, KeyTransform("custom", "context")), Value(""), output_field=TextField()
    )
    return Coalesce(top, custom, output_field=TextField())


def decisions_by_dimension(
    *, team_id: uuid.UUID, name: str, now: datetime | None = None, limit: int = TOP_LIMIT
) -> list[Ranked]:
    """The team's decisions over the day counted by ``name`` (CONTEXT_DIMENSIONS), most first;
    calls that do not say are counted as NOT_SET."""
    if name not in CONTEXT_DIMENSIONS:
        raise ValueError(f"unknown dimension {name!r}")

    def count(since: datetime, until: datetime | None) -> Iterable[tuple[Hashable, int]]:
        rows = _decisions(team_id, since, until).annotate(value=_dimension(name))
        return rows.values("value").annotate(n=Count("*")).values_list("value", "n")

    counted = _counted(
        key=f"{name}:{team_id.hex}", now=now or timezone.now(), span=DAY, step=DAY_STEP, count=count
    )
    return [Ranked(NOT_SET if value is None else str(value), n) for value, n in _ranked(counted, limit)]


# --- approvals -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingGroup:
    group: str  # an approver group's slug; "" for approvals that name none (team admins decide)
    count: int
    oldest_seconds: float


@dataclass(frozen=True, slots=True)
class PendingApprovals:
    count: int
    oldest_seconds: float | None
    groups: tuple[PendingGroup, ...] = field(default=())


def pending_approvals_of_team(*, team_id: uuid.UUID, now: datetime | None = None) -> PendingApprovals:
    """What waits for a decision in the team now: how many, how long the oldest has waited, and
    the same per approver group (an approval asking two groups counts in both). Past their
    deadline but not yet swept ones are not waiting any more (as the nav badge counts)."""
    now = now or timezone.now()
    pending = (
        approvals_of_team(team_id=team_id, status=Approval.Status.PENDING)
        .filter(expires_at__gt=now)
        .order_by("created_at")
        .values_list("created_at", "approver_groups")
    )
    count = 0
    oldest: datetime | None = None
    per_group: dict[str, list[Any]] = {}
    for created_at, groups in pending:
        count += 1
        oldest = created_at if oldest is None else oldest
        for group in _group_slugs(groups):
            entry = per_group.setdefault(group, [0, created_at])
            entry[0] += 1
    return PendingApprovals(
        count=count,
        oldest_seconds=None if oldest is None else max(0.0, (now - oldest).total_seconds()),
        groups=tuple(
            PendingGroup(group, n, max(0.0, (now - first).total_seconds()))
            for group, (n, first) in sorted(per_group.items(), key=lambda item: (-item[1][0], item[0]))
        ),
    )


def _group_slugs(groups: Any) -> Iterable[str]:
    if not isinstance(groups, list) or not groups:
        return ("",)
    return dict.fromkeys(str(g) for g in groups)


def pending_counts_of_teams(
    *, team_ids: Sequence[uuid.UUID], now: datetime | None = None
) -> dict[uuid.UUID, int]:
    """How many approvals wait in each team (the home page), in one query."""
    now = now or timezone.now()
    counts = dict.fromkeys(team_ids, 0)
    rows = (
        Approval.objects.filter(
            team_id__in=list(team_ids), status=Approval.Status.PENDING, expires_at__gt=now
        )
        .order_by()
        .values("team_id")
        .annotate(n=Count("*"))
        .values_list("team_id", "n")
    )
    counts.update(dict(rows))
    return counts


# --- policy --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivePolicy:
    version: RuleSetVersion
    publication: RuleSetPublication | None  # the publish (or rollback) that made it active

    @property
    def active_since(self) -> datetime | None:
        return self.publication.created_at if self.publication else self.version.published_at


def active_policy_of_team(*, team_id: uuid.UUID) -> ActivePolicy | None:
    """The team's active rule-set version and the publication that made it active (a rollback
    re-activates an old version: it has been active since then, not since its first publish)."""
    version = (
        rule_set_versions_of_team(team_id=team_id)
        .filter(is_active=True)
        .only("id", "team_id", "number", "author_name", "published_at", "created_at", "status")
        .first()
    )
    if version is None:
        return None
    publication = (
        rule_set_publications_of_team(team_id=team_id)
        .filter(version_id=version.id)
        .order_by("-created_at")
        .only("id", "kind", "actor_name", "created_at", "version_id", "previous_version_id", "team_id")
        .first()
    )
    return ActivePolicy(version=version, publication=publication)
