"""The decisions explorer's filters: read from the URL's query, applied to the database query and
to a live row, so a new row joins the page only if it matches what the page shows.

``row_fields`` is what a live row carries for matching (dashboards/sink.py computes it once per
row); ``ExplorerFilters.matches`` decides on it without the database, and must say what the
database says (``decision_filters`` -> audit.selectors.decisions_of_team): exact, case-sensitive
equality on the text columns (PostgreSQL ``=``; SQLite's default BINARY collation), and
``from <= created_at <= to``. dashboards/tests/test_explorer_filters.py holds them to it.

A value the explorer cannot use (a date that is not one, an outcome that does not exist) is a
``FilterError`` with a message for the page (a 400), never a filter quietly dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime, time
from typing import Any
from urllib.parse import urlencode

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.models import CONTEXT_COLUMN_LENGTH, DecisionRecord
from audit.selectors import DecisionFilters

# ExplorerFilters attribute -> audit.selectors.DecisionFilters attribute.
DATABASE_NAMES = {
    "tool": "tool_name",
    "decision": "decision",
    "rule": "rule_id",
    "model": "model",
    "environment": "environment",
    "agent": "agent_id",
    "session": "session_id",
    "source": "source",
    "since": "start",
    "until": "end",
}
# Query parameter -> ExplorerFilters attribute (the page's form uses the same names).
TEXT_PARAMETERS = {
    "tool": "tool",
    "decision": "decision",
    "rule": "rule",
    "model": "model",
    "environment": "environment",
    "agent": "agent",
    "session": "session",
    "source": "source",
}
TIME_PARAMETERS = {"from": "since", "to": "until"}
FILTER_PARAMETERS = (*TEXT_PARAMETERS, *TIME_PARAMETERS)
# Longer than any stored value (tool and rule columns are 200, the context columns too).
MAX_VALUE_LENGTH = CONTEXT_COLUMN_LENGTH
CHOICES = {
    "decision": frozenset(DecisionRecord.Outcome.values),
    "source": frozenset(DecisionRecord.Source.values),
}


class FilterError(ValueError):
    """The query asks for a filter the explorer cannot apply; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ExplorerFilters:
    tool: str | None = None
    decision: str | None = None
    rule: str | None = None
    model: str | None = None
    environment: str | None = None
    agent: str | None = None
    session: str | None = None
    source: str | None = None
    since: datetime | None = None  # ?from=, inclusive
    until: datetime | None = None  # ?to=, inclusive

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ExplorerFilters:
        """The filters of a query string (a QueryDict or plain mapping); unknown keys ignored.
        Empty values mean "any". Raises ``FilterError`` naming every value it cannot use."""

        def value(name: str) -> str | None:
            raw = params.get(name)
            if isinstance(raw, list):
                raw = raw[-1] if raw else None
            text = str(raw).strip() if raw is not None else ""
            return text or None

        problems: list[str] = []
        values: dict[str, Any] = {}
        for name, attribute in TEXT_PARAMETERS.items():
            text = value(name)
            if text is None:
                continue
            if len(text) > MAX_VALUE_LENGTH:
                problems.append(f"{name}: longer than {MAX_VALUE_LENGTH} characters")
            elif name in CHOICES and text not in CHOICES[name]:
                problems.append(f"{name}: {text!r} is not one of {', '.join(sorted(CHOICES[name]))}")
            else:
                values[attribute] = text
        for name, attribute in TIME_PARAMETERS.items():
            text = value(name)
            if text is None:
                continue
            moment = _parse_moment(text, end_of_day=name == "to")
            if moment is None:
                problems.append(f"{name}: {text!r} is not a date and time (use YYYY-MM-DDTHH:MM)")
            else:
                values[attribute] = moment
        since, until = values.get("since"), values.get("until")
        if since is not None and until is not None and since > until:
            problems.append("from: is after to")
        if problems:
            raise FilterError("; ".join(problems))
        return cls(**values)

    def query_params(self) -> dict[str, str]:
        """The filters as query parameters (``from_params`` reads them back to equal filters)."""
        params = {name: getattr(self, attribute) for name, attribute in TEXT_PARAMETERS.items()}
        params.update({name: _moment_text(getattr(self, a)) for name, a in TIME_PARAMETERS.items()})
        return {name: text for name, text in params.items() if text}

    def query_string(self) -> str:
        return urlencode(self.query_params())

    def form_values(self) -> dict[str, str]:
        """What the explorer's form shows in each field (parameter -> value, "" for any)."""
        values = {name: getattr(self, attribute) or "" for name, attribute in TEXT_PARAMETERS.items()}
        values.update({name: local_input_value(getattr(self, a)) for name, a in TIME_PARAMETERS.items()})
        return values

    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def decision_filters(self) -> DecisionFilters:
        """The same filters for the database (audit.selectors.decisions_of_team, the export)."""
        return DecisionFilters(**{column: getattr(self, name) for name, column in DATABASE_NAMES.items()})

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Does a live row (``row_fields``) belong on a page with these filters?"""
        for attribute in TEXT_PARAMETERS.values():
            wanted = getattr(self, attribute)
            if wanted is not None and row.get(attribute) != wanted:
                return False
        if self.since is not None or self.until is not None:
            created = _row_time(row.get("created_at"))
            if created is None:
                return False
            if self.since is not None and created < self.since:
                return False
            if self.until is not None and created > self.until:
                return False
        return True


def row_fields(decision: DecisionRecord) -> dict[str, Any]:
    """What a live row carries for ``ExplorerFilters.matches`` (JSON-ready)."""
    return {
        "tool": decision.tool_name,
        "decision": decision.decision,
        "rule": decision.rule_id,
        "model": decision.model,
        "environment": decision.environment,
        "agent": decision.agent_id,
        "session": decision.session_id,
        "source": decision.source,
        "created_at": decision.created_at.isoformat(),
    }


def local_input_value(moment: datetime | None) -> str:
    """A moment as an ``<input type="datetime-local">`` value, in the server's time zone (which
    holds at most milliseconds: a day's end, ``23:59:59.999999``, shows as ``23:59:59.999``)."""
    text = _moment_text(moment) or ""
    return text[:23] if len(text) > 23 else text


def _parse_moment(text: str, *, end_of_day: bool) -> datetime | None:
    """ISO 8601 with or without an offset (datetime-local's ``2026-12-02T21:05``), or a date (its
    start, or for ``to`` its last microsecond). A moment without an offset is the server's time."""
    try:
        # A date first: parse_datetime (datetime.fromisoformat) reads "2026-12-02" as that day's
        # midnight, which as ``to`` would leave the whole day out.
        day = parse_date(text)
        moment = _day_bound(day, end_of_day) if day is not None else parse_datetime(text)
        if moment is None:
            return None
    except ValueError:  # well formed but impossible, e.g. month 13
        return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _day_bound(day: date, end_of_day: bool) -> datetime:
    return datetime.combine(day, time.max if end_of_day else time.min)


def _moment_text(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    local = timezone.localtime(moment).replace(tzinfo=None)
    if local.microsecond:
        return local.isoformat(timespec="microseconds")
    return local.isoformat(timespec="minutes" if local.second == 0 else "seconds")


def _row_time(raw: Any) -> datetime | None:
    if isinstance(raw, datetime):
        return raw
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment
