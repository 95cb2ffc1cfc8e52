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
* The day window's panels are counted per quarter-hour, each one that is over cached (``_counted``)
  and counted ahead by beat (``day_counts_warm``); the day's latency percentiles too, from a
  latency histogram per quarter-hour (``LATENCY_PANEL``: approximate, within 2.5 %).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    FloatField,
    Func,
    IntegerField,
    OuterRef,
    QuerySet,
    TextField,
    Value,
    When,
)
from django.db.models.expressions import Expression
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Coalesce, Floor, Greatest, Least, Ln, NullIf
from django.utils import timezone

from approvals import selectors as approval_selectors
from approvals.models import Approval
from approvals.selectors import PENDING_COUNT_LIMIT, CappedCount, approvals_of_team
from audit.models import DecisionRecord
from policies.models import RuleSetPublication, RuleSetVersion
from policies.selectors import rule_set_publications_of_team, rule_set_versions_of_team
from tenancy.models import Team

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
# kept in Django's cache (Redis, shared by the web processes) on its own key, per team and panel,
# and the current one is read every time. So when the window moves on, one new quarter-hour is
# counted, not the day again (10M benchmark: the day panels' first load after each quarter-hour
# was 0.5-1.9 s each). Beat counts each quarter-hour shortly after it ends (day_counts_warm,
# dashboards.tasks), so a request normally finds them all and counts only the current one.
# The record is append-only and stamped by the server when decided, so a quarter-hour that is
# over does not change once its last writes have committed (SETTLED_AFTER); until then it is
# counted with the current one.
SETTLED_AFTER = timedelta(seconds=10)
# A quarter-hour stays in the day's window for a day: kept a little longer than that.
CACHE_SECONDS = int((DAY + timedelta(hours=1)).total_seconds())
# The shape of the cached values (per team, panel and bucket, a Counter of the panel's keys); a
# new shape takes new keys, so a deploy never reads the old one.
CACHE_FORMAT = 2
# Teams whose day buckets one warm query counts (and whose keys one cache read fetches: 95 a team).
WARM_TEAMS_PER_QUERY = 50

# A panel's count: ``count(team_ids, since, until, width)`` yields (team, bucket, key, n) for the
# rows of those teams stamped in [since, until) (``until`` None: no end), ``bucket`` being the row's
# ``_EpochBucket`` of ``width`` seconds. One GROUP BY query.
TeamCount = Callable[
    [Sequence[uuid.UUID], datetime, datetime | None, int], Iterable[tuple[uuid.UUID, int, Hashable, int]]
]
# team -> bucket index -> the panel's key -> n
PerBucket = dict[uuid.UUID, dict[int, Counter[Hashable]]]


@dataclass(frozen=True, slots=True)
class Panel:
    """What a panel counts over a window; ``name`` is its part of the cache keys."""

    name: str
    count: TeamCount


def _cache_key(panel: Panel, team_id: uuid.UUID, width: int, index: int) -> str:
    return f"overview:{CACHE_FORMAT}:{panel.name}:{team_id.hex}:{width}:{index}"


def _grouped(rows: Iterable[tuple[uuid.UUID, int, Hashable, int]]) -> PerBucket:
    out: PerBucket = {}
    for team, bucket, key, n in rows:
        out.setdefault(team, {}).setdefault(bucket, Counter())[key] += n
    return out


def _settled_before(*, now: datetime, step: timedelta, last: int, tz: Any) -> int:
    """The first bucket not settled yet: the current one (``last``), or the one before it for
    SETTLED_AFTER after it ended, while its last writes may still be committing."""
    return last if now - _moment(last, step, tz) >= SETTLED_AFTER else last - 1


def _closed_counts(
    panel: Panel, team_ids: Sequence[uuid.UUID], *, first: int, end: int, step: timedelta, tz: Any
) -> PerBucket:
    """Buckets ``first`` .. ``end - 1`` of each team: from the cache, and the ones not there
    counted in one query (from the oldest of them to ``end``) and stored, each on its own key."""
    width = int(step.total_seconds())
    keys = {(team, i): _cache_key(panel, team, width, i) for team in team_ids for i in range(first, end)}
    if not keys:
        return {}
    cached = _cache_get_many(list(keys.values()))
    out: PerBucket = {team: {} for team in team_ids}
    missing = []
    for (team, i), key in keys.items():
        bucket = cached.get(key)
        if isinstance(bucket, Counter):
            out[team][i] = bucket
        else:
            missing.append((team, i))
    if missing:
        teams = sorted({team for team, _ in missing})
        low = min(i for _, i in missing)
        counted = _grouped(panel.count(teams, _moment(low, step, tz), _moment(end, step, tz), width))
        fresh: dict[str, Counter[Hashable]] = {}
        for team, i in missing:
            # an empty quarter-hour is cached too (an empty Counter), so it is not asked again
            bucket = counted.get(team, {}).get(i, Counter())
            out[team][i] = bucket
            fresh[keys[(team, i)]] = bucket
        _cache_set_many(fresh)
    return out


def _counted(
    panel: Panel, team_ids: Sequence[uuid.UUID], *, now: datetime, span: timedelta, step: timedelta
) -> PerBucket:
    """``panel``'s counts per team and ``step`` bucket over the last ``span`` (ending with the
    bucket that holds ``now``; rows stamped past it are in the current one's query too). Spans
    over an hour take their settled buckets from the cache (``_closed_counts``): the query left is
    the current bucket's."""
    first, last = _window(now=now, span=span, step=step)
    tz = now.tzinfo or timezone.get_current_timezone()
    width = int(step.total_seconds())
    if span <= HOUR:
        return _grouped(panel.count(team_ids, _moment(first, step, tz), None, width))
    settled = _settled_before(now=now, step=step, last=last, tz=tz)
    out = _closed_counts(panel, team_ids, first=first, end=settled, step=step, tz=tz)
    for team, buckets in _grouped(panel.count(team_ids, _moment(settled, step, tz), None, width)).items():
        out.setdefault(team, {}).update(buckets)
    return out


def _summed(buckets: dict[int, Counter[Hashable]]) -> Counter[Hashable]:
    total: Counter[Hashable] = Counter()
    for bucket in buckets.values():
        total.update(bucket)
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


def _decisions(
    team_ids: Sequence[uuid.UUID], since: datetime, until: datetime | None
) -> QuerySet[DecisionRecord]:
    # ``team_id IN (one)`` is ``team_id = one`` to PostgreSQL: the same index scans as for a team.
    rows = DecisionRecord.objects.filter(team_id__in=list(team_ids), created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    return rows.order_by()


def _per_bucket(
    rows: QuerySet[DecisionRecord], width: int, *fields: str
) -> Iterator[tuple[uuid.UUID, int, Hashable, int]]:
    """``rows`` counted per team, ``width`` bucket and ``fields`` (the key: one field's value, or
    a tuple of several), in the database."""
    grouped = (
        rows.annotate(bucket=_EpochBucket(F("created_at"), width=width))
        .values("team_id", "bucket", *fields)
        .annotate(n=Count("*"))
        .values_list("team_id", "bucket", *fields, "n")
    )
    for team, bucket, *key, n in grouped:
        yield team, bucket, key[0] if len(key) == 1 else tuple(key), n


def _count_outcomes(
    team_ids: Sequence[uuid.UUID], since: datetime, until: datetime | None, width: int
) -> Iterable[tuple[uuid.UUID, int, Hashable, int]]:
    # ``decision IN (...)``: three range scans of decision_team_outcome_time, index-only
    return _per_bucket(_decisions(team_ids, since, until).filter(decision__in=OUTCOMES), width, "decision")


# All sources count: a client decision was a call too.
OUTCOMES_PANEL = Panel("series", _count_outcomes)


def decision_series(
    *, team_id: uuid.UUID, now: datetime | None = None, span: timedelta = HOUR, step: timedelta = HOUR_STEP
) -> Series:
    """The team's decisions per ``step`` and outcome over the last ``span`` (empty buckets
    included, so a chart has every bar)."""
    now = now or timezone.now()
    counted = _counted(OUTCOMES_PANEL, [team_id], now=now, span=span, step=step).get(team_id, {})
    first, last = _window(now=now, span=span, step=step)
    tz = now.tzinfo or timezone.get_current_timezone()
    empty: Counter[Hashable] = Counter()
    return Series(
        step=step,
        # a row stamped past now (clock skew) has no bar
        buckets=tuple(
            Bucket(_moment(i, step, tz), {outcome: counted.get(i, empty)[outcome] for outcome in OUTCOMES})
            for i in range(first, last + 1)
        ),
    )


def decision_totals_of_teams(
    *, team_ids: Sequence[uuid.UUID], now: datetime | None = None
) -> dict[uuid.UUID, dict[str, int]]:
    """Each team's decisions per outcome over the day (the day chart's window), in one query
    for all the teams (the home page's small counts: a window, never a count of the table).
    The day chart's cached quarter-hours are the same counts: they are shared with it."""
    ids = sorted(set(team_ids))
    counted = _counted(OUTCOMES_PANEL, ids, now=now or timezone.now(), span=DAY, step=DAY_STEP)
    totals = {team_id: _summed(counted.get(team_id, {})) for team_id in ids}
    return {team_id: {o: totals[team_id][o] for o in OUTCOMES} for team_id in team_ids}


# --- latency -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    """Validate's recorded latency (ms) over a window: server decisions only, since a client
    decision's latency is the SDK's own and inline rules are the caller's. ``approximate``: the
    percentiles were read from a histogram (the day's; within LATENCY_ERROR of the exact ones)."""

    count: int
    p50: float | None
    p99: float | None
    approximate: bool = False


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` percentile of sorted ``values`` by linear interpolation between the two
    nearest ranks: what PostgreSQL's percentile_cont computes, so both backends agree."""
    if not values:
        return None
    position = fraction * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


# The day's percentiles come from latency histograms counted per quarter-hour, cached and warmed
# like the day's counts (a percentile of the day's ~276k rows was 250 ms on the 10M benchmark;
# bins merge, percentiles do not). Bin ``b`` holds latencies in [BASE**b, BASE**(b + 1)) ms, so
# ``b = floor(ln(ms) / ln(BASE))``; latencies under the lowest bin (~0.001 ms) go into it, over
# the highest (~2.9 h) into that one, and zero (the column's default) and below into
# LATENCY_ZERO_BIN, read as 0. A bin reads as its geometric middle, BASE**(b + 0.5), within a
# factor sqrt(BASE) of every latency in it; histogram_percentile interpolates those values
# between the two ranks percentile_cont interpolates, so its answer is within that factor of
# percentile_cont's: LATENCY_ERROR = sqrt(1.05) - 1, 2.5 % (for latencies in the bins' range).
LATENCY_BASE = 1.05
LATENCY_LOWEST_BIN = -142  # 1.05**-142 = 0.00098 ms
LATENCY_HIGHEST_BIN = 330  # up to 1.05**331 = 1.0e7 ms
LATENCY_ZERO_BIN = LATENCY_LOWEST_BIN - 1
LATENCY_ERROR = math.sqrt(LATENCY_BASE) - 1
# ln(1.05) computed here and sent to the database as a value: SQL and latency_bin divide by the same double.
_LN_BASE = math.log(LATENCY_BASE)


def latency_bin(ms: float) -> int:
    """The histogram bin of a latency: what the panel's SQL computes (_latency_bin_sql)."""
    if ms <= 0:
        return LATENCY_ZERO_BIN
    if math.isnan(ms):  # PostgreSQL orders NaN above every number (SQLite cannot store it)
        return LATENCY_HIGHEST_BIN
    return math.floor(min(max(math.log(ms) / _LN_BASE, LATENCY_LOWEST_BIN), LATENCY_HIGHEST_BIN))


def _bin_value(index: int) -> float:
    return 0.0 if index <= LATENCY_ZERO_BIN else LATENCY_BASE ** (index + 0.5)


def histogram_percentile(histogram: Mapping[Any, int], fraction: float) -> float | None:
    """The ``fraction`` percentile of the latencies counted in ``histogram`` (bin -> n): percentile_cont's
    interpolation between the two nearest ranks, each rank read as its bin's value (``_bin_value``)."""
    bins = sorted((int(index), n) for index, n in histogram.items() if n > 0)
    total = sum(n for _, n in bins)
    if not total:
        return None
    position = fraction * (total - 1)
    low = math.floor(position)
    high = min(low + 1, total - 1)
    value: dict[int, float] = {}  # rank -> its bin's value
    seen = 0
    for index, n in bins:
        seen += n
        for rank in (low, high):
            if rank < seen:
                value.setdefault(rank, _bin_value(index))
        if high < seen:
            break
    return value[low] + (value[high] - value[low]) * (position - low)


def _latency_bin_sql() -> Expression:
    """latency_bin in SQL: ``floor(ln(latency_ms) / ln(1.05))`` clamped, zero and below apart.
    ``ln`` and ``floor`` are PostgreSQL's, and SQLite's (built in since 3.35 when compiled with
    math functions; otherwise Django registers them on every SQLite connection, from Python's
    math), so both backends group in SQL, with the C library's log either way; the clamp comes
    before the cast, so no value (not even an infinite one) overflows the integer. The CASE
    keeps ln away from zero and negatives (an error on PostgreSQL)."""
    ms = F("latency_ms")
    scaled = Least(
        Greatest(Ln(ms) / Value(_LN_BASE), Value(float(LATENCY_LOWEST_BIN))),
        Value(float(LATENCY_HIGHEST_BIN)),
    )
    return Case(
        When(latency_ms__lte=0, then=Value(LATENCY_ZERO_BIN)),
        default=Cast(Floor(scaled), IntegerField()),
        output_field=IntegerField(),
    )


def _count_latency_bins(
    team_ids: Sequence[uuid.UUID], since: datetime, until: datetime | None, width: int
) -> Iterable[tuple[uuid.UUID, int, Hashable, int]]:
    rows = _decisions(team_ids, since, until).filter(source=DecisionRecord.Source.SERVER)
    return _per_bucket(rows.annotate(latency_bin=_latency_bin_sql()), width, "latency_bin")


# The bins' shape is in the name (so in the cache keys): a new shape is never merged with an old one.
LATENCY_PANEL = Panel(
    f"latency-{LATENCY_BASE}-{LATENCY_LOWEST_BIN}-{LATENCY_HIGHEST_BIN}", _count_latency_bins
)


def validate_latency(*, team_id: uuid.UUID, now: datetime | None = None, span: timedelta = HOUR) -> Latency:
    """p50 and p99 of ``latency_ms`` of the team's server decisions in the last ``span``.

    Up to an hour, exact: PostgreSQL's ``percentile_cont`` over every row of the window, in the
    database; on SQLite (no percentile function; development and tests) the newest
    SQLITE_PERCENTILE_SAMPLE rows of the window, sorted in Python, with the same interpolation.
    Longer spans (the day) are approximate (``approximate``, within LATENCY_ERROR): the window's
    quarter-hours, as the day chart's, each a latency histogram (LATENCY_PANEL) from the cache
    (warmed by day_counts_warm) but the current one, merged; the same on both backends."""
    now = now or timezone.now()
    if span <= HOUR:
        return _latency(team_id, now - span)
    counted = _counted(LATENCY_PANEL, [team_id], now=now, span=span, step=DAY_STEP)
    histogram = _summed(counted.get(team_id, {}))
    return Latency(
        count=sum(histogram.values()),
        p50=histogram_percentile(histogram, 0.5),
        p99=histogram_percentile(histogram, 0.99),
        approximate=True,
    )


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


def _day_counts(panel: Panel, team_id: uuid.UUID, now: datetime | None) -> Counter[Hashable]:
    counted = _counted(panel, [team_id], now=now or timezone.now(), span=DAY, step=DAY_STEP)
    return _summed(counted.get(team_id, {}))


def _count_denied_tools(
    team_ids: Sequence[uuid.UUID], since: datetime, until: datetime | None, width: int
) -> Iterable[tuple[uuid.UUID, int, Hashable, int]]:
    # index: team, decision, created_at
    rows = _decisions(team_ids, since, until).filter(decision=DecisionRecord.Outcome.DENY)
    return _per_bucket(rows, width, "tool_name")


def _count_rules(
    team_ids: Sequence[uuid.UUID], since: datetime, until: datetime | None, width: int
) -> Iterable[tuple[uuid.UUID, int, Hashable, int]]:
    return _per_bucket(_decisions(team_ids, since, until).exclude(rule_id=""), width, "rule_id", "rule_name")


DENIED_TOOLS_PANEL = Panel("denied", _count_denied_tools)
RULES_PANEL = Panel("rules", _count_rules)


def top_denied_tools(
    *, team_id: uuid.UUID, now: datetime | None = None, limit: int = TOP_LIMIT
) -> list[Ranked]:
    """The tools denied most often over the day."""
    counted = _day_counts(DENIED_TOOLS_PANEL, team_id, now)
    return [Ranked(str(tool), n) for tool, n in _ranked(counted, limit)]


def top_rules(*, team_id: uuid.UUID, now: datetime | None = None, limit: int = TOP_LIMIT) -> list[Ranked]:
    """The rules that decided most calls over the day (a decision no rule matched, the default
    action, has no rule id and is not counted)."""
    by_rule: Counter[Hashable] = Counter()
    names: dict[str, str] = {}  # a rule's name (the smallest, should it have changed)
    for pair, n in _day_counts(RULES_PANEL, team_id, now).items():
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


def _dimension_panel(name: str) -> Panel:
    def count(
        team_ids: Sequence[uuid.UUID], since: datetime, until: datetime | None, width: int
    ) -> Iterable[tuple[uuid.UUID, int, Hashable, int]]:
        return _per_bucket(
            _decisions(team_ids, since, until).annotate(value=_dimension(name)), width, "value"
        )

    return Panel(name, count)


DIMENSION_PANELS = {name: _dimension_panel(name) for name in CONTEXT_DIMENSIONS}


def decisions_by_dimension(
    *, team_id: uuid.UUID, name: str, now: datetime | None = None, limit: int = TOP_LIMIT
) -> list[Ranked]:
    """The team's decisions over the day counted by ``name`` (CONTEXT_DIMENSIONS), most first;
    calls that do not say are counted as NOT_SET."""
    if name not in CONTEXT_DIMENSIONS:
        raise ValueError(f"unknown dimension {name!r}")
    counted = _day_counts(DIMENSION_PANELS[name], team_id, now)
    return [Ranked(NOT_SET if value is None else str(value), n) for value, n in _ranked(counted, limit)]


# --- the day's quarter-hours, counted ahead -------------------------------------------------------

# Every panel of the day window that is counted per quarter-hour (the home page's totals are the
# day chart's counts; the day's latency is a histogram per quarter-hour).
DAY_PANELS: tuple[Panel, ...] = (
    OUTCOMES_PANEL,
    DENIED_TOOLS_PANEL,
    RULES_PANEL,
    *DIMENSION_PANELS.values(),
    LATENCY_PANEL,
)


def day_counts_warm(*, now: datetime | None = None) -> int:
    """Count and cache each settled quarter-hour of the day window that is not cached yet, for
    every day panel of every team with a decision in that window, so that a page's day panels
    count only the current quarter-hour (beat runs it shortly after each quarter-hour ends:
    dashboards.tasks.warm_day_counts). The read path's own code and keys (``_closed_counts``): one
    query a panel for up to WARM_TEAMS_PER_QUERY teams, usually for the one quarter-hour just
    over; after the cache was emptied, for the whole day. A team quiet all day is left to its
    first read. Returns the number of teams."""
    now = now or timezone.now()
    tz = now.tzinfo or timezone.get_current_timezone()
    first, last = _window(now=now, span=DAY, step=DAY_STEP)
    since = _moment(first, DAY_STEP, tz)
    # One probe of decision_team_time per team (no index leads with created_at alone).
    active = Team.objects.filter(
        Exists(DecisionRecord.objects.filter(team_id=OuterRef("pk"), created_at__gte=since))
    )
    team_ids = sorted(active.values_list("id", flat=True))
    end = _settled_before(now=now, step=DAY_STEP, last=last, tz=tz)
    for start in range(0, len(team_ids), WARM_TEAMS_PER_QUERY):
        batch = team_ids[start : start + WARM_TEAMS_PER_QUERY]
        for panel in DAY_PANELS:
            _closed_counts(panel, batch, first=first, end=end, step=DAY_STEP, tz=tz)
    return len(team_ids)


# --- approvals -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingGroup:
    group: str  # an approver group's slug; "" for approvals that name none (team admins decide)
    count: int
    oldest_seconds: float


@dataclass(frozen=True, slots=True)
class PendingApprovals:
    # Counted up to PENDING_COUNT_LIMIT ("1,000+"); when capped, the groups are those of the
    # oldest PENDING_COUNT_LIMIT waiting (each group's oldest is still exact, its count is a floor).
    count: CappedCount
    oldest_seconds: float | None
    groups: tuple[PendingGroup, ...] = field(default=())
    limit: int = PENDING_COUNT_LIMIT


def pending_approvals_of_team(
    *, team_id: uuid.UUID, now: datetime | None = None, limit: int | None = None
) -> PendingApprovals:
    """What waits for a decision in the team now: how many, how long the oldest has waited, and
    the same per approver group (an approval asking two groups counts in both). Past their
    deadline but not yet swept ones are not waiting any more (as the nav badge counts).

    Reads at most the oldest ``limit`` + 1 waiting (``approval_team_status``, in creation order),
    so the cost is bounded however many wait (100,000 pending: benchmarks/scale_10m.py); past
    ``limit`` the count is capped ("1,000+") and the groups are those of the oldest ``limit``."""
    now = now or timezone.now()
    limit = approval_selectors.PENDING_COUNT_LIMIT if limit is None else limit
    oldest_first = (
        approvals_of_team(team_id=team_id, status=Approval.Status.PENDING)
        .filter(expires_at__gt=now)
        .order_by("created_at")
        .values_list("approver_groups", "created_at")[: limit + 1]
    )
    rows = list(oldest_first)
    capped = len(rows) > limit
    rows = rows[:limit]
    oldest: datetime | None = rows[0][1] if rows else None
    per_group: dict[str, list[Any]] = {}
    for groups, created_at in rows:
        for group in _group_slugs(groups):
            entry = per_group.setdefault(group, [0, created_at])
            entry[0] += 1
            entry[1] = min(entry[1], created_at)
    return PendingApprovals(
        count=CappedCount(len(rows), capped=capped),
        limit=limit,
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
