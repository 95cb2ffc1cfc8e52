"""The overview's reads (dashboards.stats) on whichever backend the run uses: SQLite embedded,
PostgreSQL with DATABASE_URL. The same numbers are expected from both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from approvals.models import Approval
from dashboards import stats
from tests.factories import BY_TESTS, ApprovalFactory, TeamFactory, publish_rules, record_decision

pytestmark = pytest.mark.django_db

# Seven and a half minutes past noon: the current 15-minute bucket started at 12:00.
NOW = datetime(2026, 12, 2, 12, 7, 30, tzinfo=UTC)
RULES = """\
rules:
  - name: no_exports
    tool: run_data_export
    action: deny
"""


def at(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


# --- buckets -------------------------------------------------------------------------------------


def test_decision_series__last_hour__per_minute_buckets_by_outcome():
    # Given decisions this minute, five minutes ago and just over an hour ago, and another team's
    team = TeamFactory()
    record_decision(team, decision="allow", created_at=at(seconds=10))
    record_decision(team, decision="allow", created_at=at(seconds=20))
    record_decision(team, decision="deny", created_at=at(minutes=5))
    record_decision(team, decision="require_approval", created_at=at(minutes=5, seconds=1))
    record_decision(team, decision="deny", created_at=at(minutes=61))
    record_decision(TeamFactory(), decision="deny", created_at=at(seconds=5))

    # When the hour's series is read
    series = stats.decision_series(team_id=team.id, now=NOW)

    # Then there are 60 one-minute bars, the last holding now, and the old row is outside
    assert len(series.buckets) == 60
    assert series.buckets[-1].start == datetime(2026, 12, 2, 12, 7, tzinfo=UTC)
    assert series.start == datetime(2026, 12, 2, 11, 8, tzinfo=UTC)
    assert series.buckets[-1].counts == {"allow": 2, "deny": 0, "require_approval": 0}
    five_ago = {b.start: b for b in series.buckets}[datetime(2026, 12, 2, 12, 2, tzinfo=UTC)]
    # 12:02:30 (deny) and a second before it (require_approval) share the 12:02 minute
    assert five_ago.counts == {"allow": 0, "deny": 1, "require_approval": 1}
    assert series.totals == {"allow": 2, "deny": 1, "require_approval": 1}
    assert (series.total, series.peak) == (4, 2)


def test_decision_series__day__quarter_hour_buckets_split_exactly_at_the_boundary():
    # Given a decision at exactly 12:00:00 and one a millisecond before it, and one 23 h ago
    team = TeamFactory()
    record_decision(team, decision="deny", created_at=datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    record_decision(team, decision="allow", created_at=datetime(2026, 12, 2, 11, 59, 59, 999000, tzinfo=UTC))
    record_decision(team, decision="allow", created_at=at(hours=23))

    # When the day's series is read
    series = stats.decision_series(team_id=team.id, now=NOW, span=stats.DAY, step=stats.DAY_STEP)

    # Then 96 quarter-hour bars: 12:00 holds the deny, 11:45 the allow just before it
    assert len(series.buckets) == 96
    by_start = {b.start: b.counts for b in series.buckets}
    assert by_start[datetime(2026, 12, 2, 12, 0, tzinfo=UTC)]["deny"] == 1
    assert by_start[datetime(2026, 12, 2, 12, 0, tzinfo=UTC)]["allow"] == 0
    assert by_start[datetime(2026, 12, 2, 11, 45, tzinfo=UTC)]["allow"] == 1
    assert by_start[datetime(2026, 12, 1, 13, 0, tzinfo=UTC)]["allow"] == 1  # 13:07:30 yesterday
    assert series.total == 3


def test_decision_totals_of_teams__window_per_team__older_rows_not_counted():
    # Given two teams with rows inside and outside the last day
    first, second = TeamFactory(), TeamFactory()
    record_decision(first, decision="allow", created_at=at(hours=1))
    record_decision(first, decision="deny", created_at=at(hours=2))
    record_decision(first, decision="deny", created_at=at(hours=25))
    record_decision(second, decision="require_approval", created_at=at(minutes=1))

    # When both teams' totals are read at once
    totals = stats.decision_totals_of_teams(team_ids=[first.id, second.id], now=NOW)

    # Then each team has its own counts of the day
    assert totals[first.id] == {"allow": 1, "deny": 1, "require_approval": 0}
    assert totals[second.id] == {"allow": 0, "deny": 0, "require_approval": 1}


# --- latency -------------------------------------------------------------------------------------


def test_percentile__interpolates_like_percentile_cont():
    assert stats.percentile([], 0.5) is None
    assert stats.percentile([7.0], 0.99) == 7.0
    assert stats.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert stats.percentile([float(v) for v in range(1, 101)], 0.99) == pytest.approx(99.01)


def test_validate_latency__server_decisions_of_the_window__p50_p99_on_this_backend():
    # Given server decisions taking 1..100 ms in the last hour, and slow ones that must not count:
    # a client decision, an inline-rules decision and a server one two hours ago
    team = TeamFactory()
    for ms in range(1, 101):
        record_decision(team, latency_ms=float(ms), source="server", created_at=at(seconds=ms))
    record_decision(team, latency_ms=9000.0, source="client", created_at=at(seconds=5))
    record_decision(team, latency_ms=9000.0, source="inline_rules", created_at=at(seconds=5))
    record_decision(team, latency_ms=9000.0, source="server", created_at=at(hours=2))

    # When the hour's latency is read
    latency = stats.validate_latency(team_id=team.id, now=NOW)

    # Then it is percentile_cont's answer over exactly those 100 rows (PostgreSQL in SQL, SQLite in Python)
    assert latency.count == 100
    assert latency.p50 == pytest.approx(50.5)
    assert latency.p99 == pytest.approx(99.01)


def test_validate_latency__sqlite_sample__newest_rows_only(monkeypatch):
    # Given the sampled path SQLite takes (on any database), a sample of 3 and five server
    # decisions, the two oldest slow
    monkeypatch.setattr(stats, "_database_has_percentiles", lambda: False)
    monkeypatch.setattr(stats, "SQLITE_PERCENTILE_SAMPLE", 3)
    team = TeamFactory()
    for age, ms in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 500.0), (5, 500.0)]:
        record_decision(team, latency_ms=ms, created_at=at(seconds=age))

    # When the latency is read
    latency = stats.validate_latency(team_id=team.id, now=NOW)

    # Then only the newest three were used
    assert (latency.count, latency.p50, latency.p99) == (3, 2.0, pytest.approx(2.98))


def test_validate_latency__nothing_in_the_window__no_numbers():
    team = TeamFactory()
    record_decision(team, latency_ms=3.0, created_at=at(hours=3))

    latency = stats.validate_latency(team_id=team.id, now=NOW)

    assert (latency.count, latency.p50, latency.p99) == (0, None, None)


# --- top lists -----------------------------------------------------------------------------------


def test_top_denied_tools__most_denied_first__allowed_and_old_rows_ignored():
    # Given three denies of one tool, one of another, allows and a day-old deny
    team = TeamFactory()
    for _ in range(3):
        record_decision(team, tool_name="run_data_export", decision="deny", created_at=at(minutes=3))
    record_decision(team, tool_name="send_email", decision="deny", created_at=at(minutes=3))
    for _ in range(5):
        record_decision(team, tool_name="read_file", decision="allow", created_at=at(minutes=3))
    record_decision(team, tool_name="send_email", decision="deny", created_at=at(hours=25))

    # When the top denied tools are read
    top = stats.top_denied_tools(team_id=team.id, now=NOW)

    # Then the most denied comes first and nothing allowed is listed
    assert [(r.label, r.count) for r in top] == [("run_data_export", 3), ("send_email", 1)]


def test_top_rules__rules_that_decided__with_their_names_and_no_default_action():
    # Given decisions by two rules and defaults (no rule)
    team = TeamFactory()
    for _ in range(2):
        record_decision(
            team, decision="deny", rule_id="no_exports", rule_name="No exports", created_at=at(minutes=1)
        )
    record_decision(
        team, decision="require_approval", rule_id="pii", rule_name="pii", created_at=at(minutes=1)
    )
    record_decision(team, decision="allow", rule_id="", created_at=at(minutes=1))

    # When the top rules are read
    top = stats.top_rules(team_id=team.id, now=NOW, limit=5)

    # Then each rule is counted, its name shown when it says more than its id
    assert [(r.label, r.count, r.detail) for r in top] == [("no_exports", 2, "No exports"), ("pii", 1, "")]


def test_decisions_by_dimension__context_and_custom_fields__unset_counted_as_not_set():
    # Given calls naming their model at the top of the context, in custom, empty, or not at all
    team = TeamFactory()
    record_decision(team, context={"model": "gpt-5", "environment": "prod"}, created_at=at(minutes=1))
    record_decision(
        team, context={"custom": {"model": "gpt-5", "environment": "staging"}}, created_at=at(minutes=1)
    )
    record_decision(team, context={"model": "", "custom": {"model": "claude"}}, created_at=at(minutes=1))
    record_decision(team, context={"model": ""}, created_at=at(minutes=1))
    record_decision(team, context={}, created_at=at(minutes=1))

    # When decisions are counted by model and by environment
    by_model = stats.decisions_by_dimension(team_id=team.id, name="model", now=NOW)
    by_environment = stats.decisions_by_dimension(team_id=team.id, name="environment", now=NOW)

    # Then each value is counted where the SDK put it, and the rest are "(not set)"
    assert sorted((r.label, r.count) for r in by_model) == [("(not set)", 2), ("claude", 1), ("gpt-5", 2)]
    assert sorted((r.label, r.count) for r in by_environment) == [
        ("(not set)", 3),
        ("prod", 1),
        ("staging", 1),
    ]


def test_decisions_by_dimension__unknown_name__refused():
    with pytest.raises(ValueError, match="unknown dimension"):
        stats.decisions_by_dimension(team_id=TeamFactory().id, name="arguments")


# --- approvals -----------------------------------------------------------------------------------


def test_pending_approvals__count_oldest_and_per_group__decided_and_expired_ones_left_out():
    # Given pending approvals for compliance (10 and 2 minutes old), one for two groups, one for
    # no group, a decided one and one past its deadline
    team = TeamFactory()
    now = datetime.now(UTC)
    ApprovalFactory(team=team, approver_groups=["compliance"], created_at=now - timedelta(minutes=10))
    ApprovalFactory(team=team, approver_groups=["compliance"], created_at=now - timedelta(minutes=2))
    ApprovalFactory(
        team=team, approver_groups=["compliance", "security"], created_at=now - timedelta(minutes=4)
    )
    ApprovalFactory(team=team, approver_groups=[], created_at=now - timedelta(minutes=1))
    ApprovalFactory(
        team=team, status=Approval.Status.APPROVED, resolved_at=now, created_at=now - timedelta(hours=2)
    )
    ApprovalFactory(team=team, created_at=now - timedelta(hours=3), expires_at=now - timedelta(seconds=1))

    # When the team's pending approvals are read
    pending = stats.pending_approvals_of_team(team_id=team.id, now=now)

    # Then four wait, the oldest for ten minutes; per group, most first
    assert pending.count == 4
    assert pending.oldest_seconds == pytest.approx(600, abs=1)
    assert [(g.group, g.count, round(g.oldest_seconds)) for g in pending.groups] == [
        ("compliance", 3, 600),
        ("", 1, 60),
        ("security", 1, 240),
    ]


def test_pending_counts_of_teams__one_query_for_all():
    first, second = TeamFactory(), TeamFactory()
    ApprovalFactory(team=first)
    ApprovalFactory(team=first)

    assert stats.pending_counts_of_teams(team_ids=[first.id, second.id]) == {first.id: 2, second.id: 0}


# --- policy --------------------------------------------------------------------------------------


def test_active_policy__none_published__none():
    assert stats.active_policy_of_team(team_id=TeamFactory().id) is None


def test_active_policy__after_a_rollback__active_since_the_rollback():
    # Given v1 published, then v2, then a rollback to v1
    from policies.services import rule_set_version_publish

    team = TeamFactory()
    v1 = publish_rules(team, RULES)
    publish_rules(team, RULES.replace("no_exports", "no_exports_2"))
    rollback = rule_set_version_publish(version=v1, actor=BY_TESTS)

    # When the active policy is read
    active = stats.active_policy_of_team(team_id=team.id)

    # Then it is v1, active since the rollback (not its first publish)
    assert active is not None
    assert active.version.number == 1
    assert active.publication is not None and active.publication.kind == "rollback"
    assert active.active_since == rollback.created_at


# --- the day's cache -----------------------------------------------------------------------------


def test_day_counts__quarter_hours_over_are_cached__the_current_one_is_read_each_time(
    django_assert_num_queries,
):
    # Given a day series read once (at NOW, 7.5 min into its quarter-hour: the rest has settled)
    team = TeamFactory()
    record_decision(team, decision="deny", created_at=at(hours=3))
    day = {"span": stats.DAY, "step": stats.DAY_STEP}
    assert stats.decision_series(team_id=team.id, now=NOW, **day).total == 1
    assert [r.count for r in stats.top_denied_tools(team_id=team.id, now=NOW)] == [1]

    # When a row lands in a quarter-hour that is over (which the server never writes: it stamps
    # rows when it decides) and one in the current quarter-hour
    record_decision(team, decision="deny", created_at=at(hours=2))
    record_decision(team, decision="allow", created_at=at(seconds=1))

    # Then the day's counts come from the cache for the past and from the table for now
    series = stats.decision_series(team_id=team.id, now=NOW, **day)
    assert series.totals == {"allow": 1, "deny": 1, "require_approval": 0}
    assert [r.count for r in stats.top_denied_tools(team_id=team.id, now=NOW)] == [1]
    # and once the window moves to the next quarter-hour, only the quarter-hour just over and
    # the new current one are counted (two queries), the rest of the day still from the cache
    later = NOW + timedelta(minutes=15)
    with django_assert_num_queries(2):
        totals = stats.decision_series(team_id=team.id, now=later, **day).totals
    assert totals == {"allow": 1, "deny": 1, "require_approval": 0}


def test_day_counts__just_after_a_quarter_hour_ends__not_cached_while_its_writes_may_land():
    # Given a read 2 s into a quarter-hour (the one before it may still be committing)
    team = TeamFactory()
    early = datetime(2026, 12, 2, 12, 0, 2, tzinfo=UTC)
    day = {"span": stats.DAY, "step": stats.DAY_STEP}
    assert stats.decision_series(team_id=team.id, now=early, **day).total == 0

    # When a row of the quarter-hour just over commits late
    record_decision(team, decision="allow", created_at=datetime(2026, 12, 2, 11, 59, 59, tzinfo=UTC))

    # Then the next read counts it
    assert stats.decision_series(team_id=team.id, now=early + timedelta(seconds=1), **day).total == 1


def test_day_counts__cache_unavailable__counted_from_the_table(monkeypatch):
    # Given a cache that fails (Redis down)
    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(stats.cache, "get", broken)
    monkeypatch.setattr(stats.cache, "set", broken)
    team = TeamFactory()
    record_decision(team, decision="deny", tool_name="send_sms", created_at=at(hours=1))

    # When the day's reads run, then they still answer
    assert [(r.label, r.count) for r in stats.top_denied_tools(team_id=team.id, now=NOW)] == [("send_sms", 1)]
    assert stats.validate_latency(team_id=team.id, now=NOW, span=stats.DAY).count == 1


def test_pending_approvals__past_the_limit__capped_with_the_oldest_groups():
    # Given four waiting, the oldest two asking compliance, the newer two security
    now = datetime.now(UTC)
    team = TeamFactory()
    for minutes, groups in ((10, ["compliance"]), (8, ["compliance"]), (6, ["security"]), (4, ["security"])):
        ApprovalFactory(team=team, approver_groups=groups, created_at=now - timedelta(minutes=minutes))

    # When they are counted up to three
    pending = stats.pending_approvals_of_team(team_id=team.id, now=now, limit=3)

    # Then it says "3+", the oldest is exact, and the groups are the oldest three's
    assert (pending.count, pending.count.capped, str(pending.count)) == (3, True, "3+")
    assert pending.oldest_seconds == pytest.approx(600, abs=1)
    assert [(g.group, g.count) for g in pending.groups] == [("compliance", 2), ("security", 1)]
    assert not stats.pending_approvals_of_team(team_id=team.id, now=now).count.capped
