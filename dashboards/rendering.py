"""Decision rows as the live path sends them: rendered once, by the process that announces them."""

from __future__ import annotations

from collections.abc import Iterable

from django.template.loader import get_template

from audit.models import DecisionRecord
from dashboards.filters import row_fields
from dashboards.live import LiveRow

ROW_TEMPLATE = "dashboards/_decision_row.html"


def live_rows(
    decisions: Iterable[DecisionRecord], *, team_slugs: dict[object, str] | None = None
) -> list[LiveRow]:
    """Each decision's table row (the explorer's own template) and its filter fields."""
    template = get_template(ROW_TEMPLATE)
    rows = []
    for decision in decisions:
        team_slug = (team_slugs or {}).get(decision.team_id, "")
        rows.append(
            LiveRow(
                id=str(decision.id),
                sequence=decision.sequence,
                fields=row_fields(decision),
                html=template.render({"d": decision, "team_slug": team_slug}).strip(),
            )
        )
    return rows
