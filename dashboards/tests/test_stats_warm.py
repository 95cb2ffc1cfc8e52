"""The day panels' quarter-hours counted ahead (dashboards.stats.day_counts_warm, run by beat as
dashboards.tasks.warm_day_counts): after it, a page's day panels read only the current quarter-hour,
the day's latency (a histogram per quarter-hour) too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards import stats
from dashboards.tasks import warm_day_counts
from dashboards.tests.test_stats_latency import assert_within_bound
from tests.factories import TeamFactory, record_decision

pytestmark = pytest.mark.django_db

# Seven and a half minutes into the 12:00 quarter-hour: the ones before it have settled.
NOW = datetime(2026, 12, 2, 12, 7, 30, tzinfo=UTC)
DAY = {"span": stats.DAY, "step": stats.DAY_STEP}
SMS = {"tool_name": "send_sms", "rule_id": "no_sms", "rule_name": "No SMS"}


@pytest.fixture(autouse=True)
def _room_for_a_day(settings):
    # Without Redis the tests' cache is LocMemCache, which keeps 300 entries by default and culls a
    # third past that: a team's day is 95 keys a panel. Redis (production, REDIS_URL runs) keeps them.
    backend = settings.CACHES["default"]["BACKEND"]
    if backend.endswith("LocMemCache"):
        settings.CACHES = {
            "default": {"BACKEND": backend, "LOCATION": "stats-warm", "OPTIONS": {"MAX_ENTRIES": 100_000}}
        }


def at(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def day_reads(team, now):
    """Each read of the overview's day window, and the home page's totals, as plain values."""

    def ranked(rows):
        return [(r.label, r.count) for r in rows]

    return {
        "series": lambda: stats.decision_series(team_id=team.id, now=now, **DAY).totals,
        "totals": lambda: stats.decision_totals_of_teams(team_ids=[team.id], now=now)[team.id],
        "denied": lambda: ranked(stats.top_denied_tools(team_id=team.id, now=now)),
        "rules": lambda: ranked(stats.top_rules(team_id=team.id, now=now)),
        "model": lambda: ranked(stats.decisions_by_dimension(team_id=team.id, name="model", now=now)),
        "environment": lambda: ranked(
            stats.decisions_by_dimension(team_id=team.id, name="environment", now=now)
        ),
        "latency": lambda: stats.validate_latency(team_id=team.id, now=now, span=stats.DAY).count,
    }


def decide(team, **fields):
    record_decision(team, context={"model": "gpt-4o", "environment": "production"}, **fields)


def test_day_counts_warm__then_each_day_panel__one_query_for_the_current_quarter_hour(
    django_assert_num_queries,
):
    # Given a team's decisions over the day, never read yet, one of them in the current quarter-hour
    team = TeamFactory()
    decide(team, decision="deny", created_at=at(hours=20), **SMS)
    decide(team, decision="allow", created_at=at(hours=3))
    decide(team, decision="deny", created_at=at(minutes=1), **SMS)

    # When the warm task has run (for the quarter-hours that are over)
    assert stats.day_counts_warm(now=NOW) == 1

    # Then each day read costs one query (the current quarter-hour) and counts the whole day
    got = {}
    for name, read in day_reads(team, NOW).items():
        with django_assert_num_queries(1):
            got[name] = read()
    assert got == {
        "series": {"allow": 1, "deny": 2, "require_approval": 0},
        "totals": {"allow": 1, "deny": 2, "require_approval": 0},
        "denied": [("send_sms", 2)],
        "rules": [("no_sms", 2)],
        "model": [("gpt-4o", 3)],
        "environment": [("production", 3)],
        "latency": 3,
    }


def test_day_counts_warm__next_quarter_hour__counts_only_the_one_just_over(django_assert_num_queries):
    # Given the warm task ran at NOW, and a decision came in its current quarter-hour
    team = TeamFactory()
    decide(team, decision="allow", created_at=at(hours=5))
    stats.day_counts_warm(now=NOW)
    decide(team, decision="deny", created_at=at(minutes=2), **SMS)
    later = NOW + timedelta(minutes=15)

    # When it runs a quarter-hour later: one query for the active teams, one per day panel (the
    # quarter-hour just over); run again, nothing is left to count
    with django_assert_num_queries(1 + len(stats.DAY_PANELS)):
        stats.day_counts_warm(now=later)
    with django_assert_num_queries(1):
        stats.day_counts_warm(now=later)

    # Then the reads of that later window find it: one query each, the new decision counted
    for read in day_reads(team, later).values():
        with django_assert_num_queries(1):
            read()
    assert stats.decision_series(team_id=team.id, now=later, **DAY).totals["deny"] == 1


def test_day_counts__just_after_a_quarter_hour_ends__not_recounting_the_day(django_assert_num_queries):
    # Given the warm task ran in the 11:45 quarter-hour, and a row of it commits late
    team = TeamFactory()
    decide(team, decision="allow", created_at=at(hours=6))
    stats.day_counts_warm(now=datetime(2026, 12, 2, 11, 50, tzinfo=UTC))
    decide(team, decision="deny", created_at=datetime(2026, 12, 2, 11, 59, 59, tzinfo=UTC), **SMS)

    # When a page reads 2 s into the 12:00 quarter-hour (11:45 may still be committing)
    early = datetime(2026, 12, 2, 12, 0, 2, tzinfo=UTC)
    with django_assert_num_queries(1):
        totals = stats.decision_series(team_id=team.id, now=early, **DAY).totals

    # Then 11:45 is counted live with 12:00 (one query), the rest of the day from the cache
    assert totals == {"allow": 1, "deny": 1, "require_approval": 0}


def test_validate_latency__day_after_the_warm_task__one_query_within_the_bound_of_the_exact(
    django_assert_num_queries,
):
    # Given server decisions over the day (0-400 ms, validate's few ms most of them), slow client
    # and inline-rules ones that do not count, and one call in the current quarter-hour
    team = TeamFactory()
    server = [0.0] + [0.4 + (n % 37) * 0.3 for n in range(150)] + [40.0, 120.0, 400.0]
    for n, ms in enumerate(server):
        decide(team, decision="allow", latency_ms=ms, created_at=at(minutes=10 + n * 8))
    decide(team, decision="allow", latency_ms=9000.0, source="client", created_at=at(hours=2))
    decide(team, decision="allow", latency_ms=9000.0, source="inline_rules", created_at=at(hours=3))
    decide(team, decision="allow", latency_ms=250.0, created_at=at(minutes=2))
    server.append(250.0)
    stats.day_counts_warm(now=NOW)

    # When the day's latency is read, it costs one query (the current quarter-hour's histogram)
    with django_assert_num_queries(1):
        latency = stats.validate_latency(team_id=team.id, now=NOW, span=stats.DAY)

    # Then its percentiles are within the bound of percentile_cont's over the same calls, and say so
    exact = sorted(server)
    assert latency.count == len(server) and latency.approximate
    assert_within_bound(latency.p50, stats.percentile(exact, 0.5))
    assert_within_bound(latency.p99, stats.percentile(exact, 0.99))
    # (the hour stays exact)
    assert not stats.validate_latency(team_id=team.id, now=NOW).approximate


def test_validate_latency__day__a_call_in_the_current_quarter_hour_shows_at_once():
    # Given the day's latency read after the warm task, with one call in the current quarter-hour
    team = TeamFactory()
    decide(team, decision="allow", latency_ms=5.0, created_at=at(hours=4))
    stats.day_counts_warm(now=NOW)
    assert stats.validate_latency(team_id=team.id, now=NOW, span=stats.DAY).count == 1

    # When a slow call is decided, then the next read counts it (no figure of the day is held back)
    decide(team, decision="allow", latency_ms=800.0, created_at=at(seconds=5))
    latency = stats.validate_latency(team_id=team.id, now=NOW, span=stats.DAY)
    assert latency.count == 2
    assert_within_bound(latency.p99, stats.percentile([5.0, 800.0], 0.99))


def test_day_counts_warm__teams_quiet_all_day__not_counted():
    # Given a team whose only decision is older than the day window, and one active today
    quiet, busy = TeamFactory(), TeamFactory()
    decide(quiet, decision="allow", created_at=at(hours=30))
    decide(busy, decision="allow", created_at=at(hours=1))

    # When the warm task runs, then only the active team is counted
    assert stats.day_counts_warm(now=NOW) == 1


def test_warm_day_counts__in_the_beat_schedule__a_minute_after_each_quarter_hour():
    # Given the Celery app as beat loads it (the project's: the task is bound to it), when its
    # schedule is read
    app = warm_day_counts.app
    assert app.main == "veto_cloud"
    entries = [e for e in app.conf.beat_schedule.values() if e["task"] == warm_day_counts.name]

    # Then the warm task is there, once, a minute past each quarter-hour (settled by then)
    assert len(entries) == 1
    schedule = entries[0]["schedule"]
    assert schedule.minute == {1, 16, 31, 46}
    assert schedule.hour == set(range(24))
    assert stats.SETTLED_AFTER < timedelta(minutes=1)


def test_warm_day_counts__task__warms_the_teams_of_the_day():
    # Given a team with a decision in the last day
    team = TeamFactory()
    decide(team, decision="allow", created_at=datetime.now(UTC) - timedelta(hours=1))

    # When the task runs (eagerly in tests), then it warmed that team
    assert warm_day_counts.delay().get() == 1
