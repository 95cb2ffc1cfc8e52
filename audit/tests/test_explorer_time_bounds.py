"""The explorer's time filter is bracketed by sequence (audit.selectors._sequence_bounds) to
start its scans near the range; the rows must be exactly those the time filter alone picks,
also where times and sequences disagree by less than SEQUENCE_LAG (web processes' clocks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audit.selectors import SEQUENCE_LAG, DecisionFilters, decisions_of_team, explorer_counts, explorer_page
from tests.factories import TeamFactory, record_decision

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
# Minutes after T0 at which decisions 1..n are stamped, in the order they are numbered: mostly
# rising an hour apart, with some stamped up to 14 minutes before the one numbered ahead of them.
STAMPED_MINUTES = [0, 60, 120, 106, 180, 240, 300, 287, 360, 420, 480, 466, 540, 600]


@pytest.fixture
def team():
    team = TeamFactory()
    for minutes in STAMPED_MINUTES:
        record_decision(team, created_at=T0 + timedelta(minutes=minutes))
    return team


@pytest.mark.parametrize(
    ("start_minutes", "end_minutes"),
    [
        (None, None),
        (100, 130),
        (106, 106),
        (107, 300),
        (None, 287),
        (466, None),
        (0, 600),
        (1000, 2000),
        (121, 179),
    ],
)
def test_explorer__time_range__same_rows_as_the_time_filter_alone(team, start_minutes, end_minutes):
    # Given a time range (ends inclusive)
    filters = DecisionFilters(
        start=None if start_minutes is None else T0 + timedelta(minutes=start_minutes),
        end=None if end_minutes is None else T0 + timedelta(minutes=end_minutes),
    )
    expected = list(
        decisions_of_team(team_id=team.id, filters=filters).order_by("-sequence").values_list("id", flat=True)
    )
    # When the explorer reads its page and counts
    page = explorer_page(team_id=team.id, filters=filters, size=100)
    counts = explorer_counts(team_id=team.id, filters=filters)
    # Then they are the time filter's rows, newest first
    assert [row.id for row in page.rows] == expected
    assert counts.total == len(expected)


def test_sequence_lag__covers_the_disorder_above():
    # The fixture's disorder is within what the bracketing allows
    assert (
        max(a - b for a, b in zip(STAMPED_MINUTES, STAMPED_MINUTES[1:], strict=False))
        < SEQUENCE_LAG.total_seconds() / 60
    )
