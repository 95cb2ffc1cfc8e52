"""The day latency's histograms (dashboards.stats: latency_bin, histogram_percentile, LATENCY_PANEL):
a percentile read from merged bins is within LATENCY_ERROR of percentile_cont's, and the database
bins the rows as latency_bin does, on SQLite and on PostgreSQL (the same test passes on both runs,
so both give the same histogram for the same rows)."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

# ln() and floor() as Django registers them on a SQLite connection built without math functions
from django.db.backends.sqlite3._functions import _sqlite_floor, _sqlite_ln
from django.db.utils import ConnectionHandler
from django.template.loader import render_to_string
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audit.models import DecisionRecord
from dashboards import stats
from tests.factories import TeamFactory, record_decision

NOW = datetime(2026, 12, 2, 12, 7, 30, tzinfo=UTC)
QUARTER = int(stats.DAY_STEP.total_seconds())

# Latencies inside the bins' range (0.001 ms .. 1e6 ms), and zero (the column's default).
latencies = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
    st.floats(min_value=0.5, max_value=50.0),  # where validate's latencies are: many ties in a bin
)
fractions = st.one_of(st.sampled_from([0.0, 0.5, 0.99, 1.0]), st.floats(min_value=0.0, max_value=1.0))


def histogram_of(values: list[float]) -> Counter[int]:
    return Counter(stats.latency_bin(v) for v in values)


def assert_within_bound(approximate: float | None, exact: float | None) -> None:
    assert approximate is not None and exact is not None
    # the bound, plus a few ulps for a latency on a bin's edge that ln() rounds into the bin below
    assert abs(approximate - exact) <= stats.LATENCY_ERROR * exact * (1 + 1e-9) + 1e-12


# --- pure: the bins and the percentile read from them ----------------------------------------------


def test_latency_error__under_five_per_cent():
    assert stats.LATENCY_ERROR == pytest.approx(0.0247, abs=1e-4)


@given(st.lists(latencies, min_size=1, max_size=300), fractions)
@settings(max_examples=400, deadline=None)
@example([1.0, 1.05, 1.05**2, 1.05**3], 0.5)  # on the bins' edges
@example([0.0, 0.0, 7.0], 0.5)  # between the zero bin and a latency
@example([0.0, 1e6], 0.99)
@example([2.0, 4.0], 0.5)
def test_histogram_percentile__any_latencies__within_the_bound_of_percentile_cont(values, fraction):
    # Given latencies, their exact percentile (percentile_cont's) and their histogram
    exact = stats.percentile(sorted(values), fraction)

    # When the percentile is read from the histogram
    approximate = stats.histogram_percentile(histogram_of(values), fraction)

    # Then it is within LATENCY_ERROR of the exact one
    assert_within_bound(approximate, exact)


def test_latency_bin__edges__zero_and_below_apart_and_the_ends_clamped():
    # zero (the column's default) and negatives (the column allows them) share a bin, read as 0
    assert stats.latency_bin(0.0) == stats.latency_bin(-3.5) == stats.LATENCY_ZERO_BIN
    assert stats.histogram_percentile({stats.LATENCY_ZERO_BIN: 3}, 0.5) == 0.0
    # bin b holds [1.05**b, 1.05**(b+1))
    assert (stats.latency_bin(0.999), stats.latency_bin(1.0), stats.latency_bin(1.05)) == (-1, 0, 1)
    assert stats.latency_bin(100.0) == math.floor(math.log(100.0) / math.log(1.05)) == 94
    # past the ends: the end bins, also for an infinite or NaN latency (no overflow)
    assert stats.latency_bin(1e-9) == stats.LATENCY_LOWEST_BIN
    assert stats.latency_bin(1e12) == stats.latency_bin(math.inf) == stats.LATENCY_HIGHEST_BIN
    assert stats.latency_bin(math.nan) == stats.LATENCY_HIGHEST_BIN


def test_histogram_percentile__nothing_counted__none():
    assert stats.histogram_percentile({}, 0.5) is None
    assert stats.histogram_percentile({10: 0}, 0.99) is None


# --- the database's bins ---------------------------------------------------------------------------

EDGES = [
    0.0,
    -2.5,
    1e-7,
    0.001,
    0.5,
    0.999,
    1.0,
    1.05,
    1.05**2,
    1.05**10,
    2.0,
    3.7,
    42.0,
    99.99,
    1234.5,
    5e7,
    1e300,
]


@pytest.mark.django_db
def test_latency_panel__sql__the_same_bins_as_latency_bin_on_this_backend():
    # Given server decisions with latencies on and around the bins' edges and random ones (validate's
    # typical few ms, log-normal), over two quarter-hours, and a client decision (not counted)
    team = TeamFactory()
    rng = random.Random(12)
    values = EDGES + [rng.lognormvariate(1.0, 1.2) for _ in range(200)]
    expected: dict[int, Counter[int]] = {}
    for n, ms in enumerate(values):
        created_at = NOW - timedelta(minutes=20 if n % 2 else 1)
        record_decision(team, latency_ms=ms, source="server", created_at=created_at)
        bucket = math.floor(created_at.timestamp()) // QUARTER
        expected.setdefault(bucket, Counter())[stats.latency_bin(ms)] += 1
    record_decision(team, latency_ms=9000.0, source="client", created_at=NOW - timedelta(minutes=1))

    # When the panel counts them in the database (one GROUP BY)
    got: dict[int, Counter[int]] = {}
    for team_id, bucket, key, n in stats.LATENCY_PANEL.count(
        [team.id], NOW - timedelta(hours=1), None, QUARTER
    ):
        assert team_id == team.id
        got.setdefault(bucket, Counter())[key] += n

    # Then every row is in the bin latency_bin gives it, per quarter-hour
    assert got == expected


# --- the panel shows the day's figures as approximate ----------------------------------------------


@pytest.mark.django_db
def test_latency_panel_template__day_row__marked_approximate_hour_row_not():
    # Given an exact hour and an approximate day
    team = TeamFactory()
    rows = [
        ("Last hour", stats.Latency(count=2, p50=3.0, p99=3.98)),
        ("Last 24 hours", stats.Latency(count=2, p50=3.02, p99=4.0, approximate=True)),
        ("Nothing", stats.Latency(count=0, p50=None, p99=None, approximate=True)),
    ]

    # When the panel is drawn
    html = render_to_string("dashboards/_overview_latency.html", {"team": team, "latency_rows": rows})

    # Then the day's figures say they are approximate, the hour's and an empty window's do not
    assert 'data-latency="p50">3.0 ms' in html
    assert 'data-latency="p50"><span title="approximate (within 2.5 %)">≈</span> 3.0 ms' in html
    assert 'data-latency="p99"><span title="approximate (within 2.5 %)">≈</span> 4.0 ms' in html
    assert 'data-latency="p50">—' in html


@pytest.mark.django_db  # pytest-django blocks every connection, this side one too, without it
def test_latency_bin_sql__sqlite_without_math_functions__django_s_ln_gives_the_same_bins():
    # Given a SQLite database whose ln() and floor() are the ones Django registers where SQLite was
    # built without math functions (this SQLite has them: they are overridden on this connection,
    # counted to show they ran), holding latencies on and around the bins' edges
    calls: Counter[str] = Counter()

    def counted(name, function):
        def call(x):
            calls[name] += 1
            return function(x)

        return call

    sqlite = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})[
        "default"
    ]
    try:
        sqlite.ensure_connection()
        sqlite.connection.create_function("LN", 1, counted("ln", _sqlite_ln), deterministic=True)
        sqlite.connection.create_function("FLOOR", 1, counted("floor", _sqlite_floor), deterministic=True)
        table = DecisionRecord._meta.db_table
        with sqlite.cursor() as cursor:
            cursor.execute(f'CREATE TABLE "{table}" (latency_ms REAL NOT NULL)')
            cursor.executemany(f'INSERT INTO "{table}" (latency_ms) VALUES (%s)', [(v,) for v in EDGES])

            # When the panel's bin expression, compiled for that SQLite, runs over them
            query = (
                DecisionRecord.objects.order_by()
                .annotate(latency_bin=stats._latency_bin_sql())
                .values_list("latency_ms", "latency_bin")
            )
            sql, params = query.query.get_compiler(connection=sqlite).as_sql()
            cursor.execute(sql, params)
            got = sorted(cursor.fetchall())
    finally:
        sqlite.close()

    # Then each latency is in latency_bin's bin, through Django's functions
    assert got == sorted((v, stats.latency_bin(v)) for v in EDGES)
    assert calls["ln"] > 0 and calls["floor"] > 0
