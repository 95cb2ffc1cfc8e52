"""The explorer's filters (dashboards/filters.py): read from the URL, and a live row's ``matches``
says exactly what the database query says, for every filter and any combination of them."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import DecisionRecord
from audit.selectors import decisions_of_team
from dashboards.filters import FILTER_PARAMETERS, ExplorerFilters, FilterError, row_fields
from tests.factories import TeamFactory, record_decision

# Small pools, so filters hit rows often; near-misses (case, spaces, prefixes) where a loose
# comparison would differ from the database's.
TOOLS = ["send_email", "Send_Email", "send_email ", "send", "zoë_✓"]
RULES = ["", "no_exports", "No_Exports"]
TEXTS = ["", "a", "A", "a ", "ab", "prod", "Prod"]
OUTCOMES = list(DecisionRecord.Outcome.values)
SOURCES = list(DecisionRecord.Source.values)
START = datetime(2026, 12, 2, 23, 58, 0, tzinfo=UTC)
# Moments around a day's end and whole minutes, with and without microseconds.
OFFSETS = [
    timedelta(seconds=s, microseconds=u) for s in (0, 59, 60, 61, 119, 120, 121) for u in (0, 1, 999_999)
]


def _record(team, pick: random.Random) -> None:
    context: dict[str, object] = {
        "agent_id": pick.choice(TEXTS),
        "session_id": pick.choice(TEXTS),
        "custom": {"model": pick.choice(TEXTS), "environment": pick.choice(TEXTS)},
    }
    record_decision(
        team,
        tool_name=pick.choice(TOOLS),
        decision=pick.choice(OUTCOMES),
        rule_id=pick.choice(RULES),
        source=pick.choice(SOURCES),
        context=context,
        created_at=START + pick.choice(OFFSETS),
    )


def _moment_text(draw: st.DrawFn) -> str:
    moment = START + draw(st.sampled_from(OFFSETS))
    spelling = draw(st.sampled_from(["minutes", "seconds", "microseconds", "date", "offset"]))
    if spelling == "date":
        return moment.date().isoformat()
    if spelling == "offset":
        return moment.isoformat()
    return moment.replace(tzinfo=None).isoformat(timespec=spelling)


@st.composite
def filter_params(draw: st.DrawFn) -> dict[str, str]:
    pools = {
        "tool": TOOLS,
        "decision": OUTCOMES,
        "rule": RULES[1:],
        "model": TEXTS[1:],
        "environment": TEXTS[1:],
        "agent": TEXTS[1:],
        "session": TEXTS[1:],
        "source": SOURCES,
    }
    params = {name: draw(st.sampled_from(pool)) for name, pool in pools.items() if draw(st.booleans())}
    for name in ("from", "to"):
        if draw(st.booleans()):
            params[name] = _moment_text(draw)
    return params


@pytest.mark.django_db
def test_matches__any_filters__agrees_with_the_database():
    # Given 80 decisions drawn from small pools of near-identical values
    team = TeamFactory()
    pick = random.Random(12)
    for _ in range(80):
        _record(team, pick)
    stored = list(DecisionRecord.objects.filter(team=team))
    fields = {record.id: row_fields(record) for record in stored}

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(params=filter_params())
    def agrees(params: dict[str, str]) -> None:
        try:
            filters = ExplorerFilters.from_params(params)
        except FilterError:
            return  # e.g. from after to: the page answers 400 and neither side runs
        # When the same filters pick rows from the database and from the live rows' fields
        in_database = set(
            decisions_of_team(team_id=team.id, filters=filters.decision_filters()).values_list(
                "id", flat=True
            )
        )
        live = {record_id for record_id, row in fields.items() if filters.matches(row)}
        # Then they pick the same rows
        assert live == in_database, params

    agrees()


@pytest.mark.django_db
def test_matches__live_row_fields_as_the_sink_sends_them__json_round_trip():
    # Given a stored decision's fields sent through the channel layer (JSON)
    team = TeamFactory()
    record = record_decision(team, created_at=START + timedelta(microseconds=5))
    sent = json.loads(json.dumps(row_fields(record)))

    # Then a range ending at that very microsecond still takes it, one before does not
    at = ExplorerFilters.from_params({"to": "2026-12-02T23:58:00.000005"})
    before = ExplorerFilters.from_params({"to": "2026-12-02T23:58:00.000004"})
    assert at.matches(sent) and not before.matches(sent)


@given(params=filter_params())
def test_query_params__read_back__the_same_filters(params):
    # Given any usable filters
    try:
        filters = ExplorerFilters.from_params(params)
    except FilterError:
        return
    # When they are written to a URL and read back, they are the same filters
    assert ExplorerFilters.from_params(filters.query_params()) == filters
    assert set(filters.query_params()) <= set(FILTER_PARAMETERS)


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"decision": "Deny"}, "decision: 'Deny' is not one of"),
        ({"source": "browser"}, "source: 'browser' is not one of"),
        ({"from": "2026-13-01"}, "from: '2026-13-01' is not a date and time"),
        ({"to": "tomorrow"}, "to: 'tomorrow'"),
        ({"from": "2026-12-03", "to": "2026-12-02"}, "from: is after to"),
        ({"session": "s" * 201}, "session: longer than 200 characters"),
    ],
)
def test_from_params__value_it_cannot_use__filter_error_naming_it(params, problem):
    with pytest.raises(FilterError, match=problem.replace("(", r"\(")):
        ExplorerFilters.from_params(params)


def test_from_params__a_date__whole_days_inclusive():
    filters = ExplorerFilters.from_params({"from": "2026-12-02", "to": "2026-12-02", "tool": "  x "})
    assert filters.tool == "x"
    assert filters.since == datetime(2026, 12, 2, tzinfo=UTC)
    assert filters.until == datetime(2026, 12, 2, 23, 59, 59, 999_999, tzinfo=UTC)
    # and the form's datetime-local inputs can hold both (milliseconds at most)
    assert filters.form_values()["to"] == "2026-12-02T23:59:59.999"
    assert filters.form_values()["from"] == "2026-12-02T00:00"


def test_decision_filters__every_explorer_filter__reaches_the_database_query():
    # Given every filter set
    filters = ExplorerFilters.from_params(
        {
            "tool": "t",
            "decision": "deny",
            "rule": "r",
            "model": "m",
            "environment": "e",
            "agent": "a",
            "session": "s",
            "source": "server",
            "from": "2026-12-01",
            "to": "2026-12-02",
        }
    )
    # Then none is lost on the way to audit.selectors.DecisionFilters
    wanted = filters.decision_filters()
    assert (wanted.tool_name, wanted.decision, wanted.rule_id, wanted.model, wanted.environment) == (
        "t",
        "deny",
        "r",
        "m",
        "e",
    )
    assert (wanted.agent_id, wanted.session_id, wanted.source) == ("a", "s", "server")
    assert wanted.start == filters.since and wanted.end == filters.until
