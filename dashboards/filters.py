"""The decisions explorer's filters: read from the URL's query, applied to the database query and
to a live row, so a new row joins the page only if it matches what the page shows.

``row_fields`` is what a live row carries for matching (dashboards/sink.py computes it once per
row); ``ExplorerFilters.matches`` decides on it without the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode

from audit.models import DecisionRecord

# The query parameters the explorer understands (the page's form uses the same names).
FILTER_PARAMETERS = ("tool", "decision")


@dataclass(frozen=True, slots=True)
class ExplorerFilters:
    tool: str | None = None
    decision: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ExplorerFilters:
        """The filters of a query string (a QueryDict or plain mapping); unknown keys ignored.
        Empty values mean "any"."""

        def value(name: str) -> str | None:
            raw = params.get(name)
            if isinstance(raw, list):
                raw = raw[-1] if raw else None
            text = str(raw).strip() if raw is not None else ""
            return text or None

        return cls(tool=value("tool"), decision=value("decision"))

    def query_params(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def query_string(self) -> str:
        return urlencode(self.query_params())

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Does a live row (``row_fields``) belong on a page with these filters?"""
        if self.tool and row.get("tool") != self.tool:
            return False
        if self.decision and row.get("decision") != self.decision:
            return False
        return True


def row_fields(decision: DecisionRecord) -> dict[str, Any]:
    """What a live row carries for ``ExplorerFilters.matches`` (JSON-ready)."""
    return {"tool": decision.tool_name, "decision": decision.decision}
