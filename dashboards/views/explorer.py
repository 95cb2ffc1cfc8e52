"""The decisions explorer (dashboard:decisions) and its export (dashboard:decisions-export).

The page lists a team's decisions newest first, filtered by what the URL's query says
(dashboards/filters.py), a page at a time (keyset on the team's sequence, ``?before=``). Its first
page is live: the socket carries the same filters, so a new decision joins the list only if it
matches (dashboards/live.py decides, per socket). The counts refresh themselves on the live path
(``data-live-refresh``): htmx asks this view again with ``HX-Target: explorer-counts`` and gets
that fragment alone.

The export streams the filtered set (audit/export.py, the API's own code: full chain entries,
each verifiable on its own) to any member who may see the page, signed in by the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseBase, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from audit.export import FORMATS, decisions_export
from audit.models import DecisionRecord
from audit.selectors import explorer_counts, explorer_newer_before, explorer_page
from dashboards.filters import FILTER_PARAMETERS, ExplorerFilters, FilterError
from dashboards.live import Kind, socket_query
from dashboards.selectors import chain_heads_of
from tenancy.models import Team
from tenancy.web import AuthenticatedHttpRequest, team_access_or_404

COUNTS_TARGET = "explorer-counts"  # the counts fragment's element id (HX-Target of its refresh)
EXPORT_DEFAULT_FORMAT = "json"  # as GET /v1/decisions/export


def _before(params: Mapping[str, Any]) -> int | None:
    raw = str(params.get("before") or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise FilterError(f"before: {raw!r} is not a positive whole number")
    return int(raw)


def _given(params: Mapping[str, Any]) -> dict[str, str]:
    """The filter parameters as the person typed them (for the form after a 400)."""
    return {name: str(params.get(name) or "").strip() for name in FILTER_PARAMETERS}


def _canonical(filters: ExplorerFilters, before: int | None) -> str:
    params = filters.query_params()
    if before is not None:
        params["before"] = str(before)
    return urlencode(params)


def _base_context(team: Team) -> dict[str, Any]:
    return {
        "team": team,
        "outcomes": DecisionRecord.Outcome.choices,
        "sources": DecisionRecord.Source.choices,
        "export_formats": sorted(FORMATS),
        "counts_target": COUNTS_TARGET,
    }


@login_required
@require_safe
def decisions_page(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The team's matching decisions, a page at a time, the first one live; a filter it cannot
    apply is a 400 with the reason beside the form, which keeps what was typed."""
    access = team_access_or_404(request, slug)
    team = access.team
    context = _base_context(team)
    try:
        filters = ExplorerFilters.from_params(request.GET)
        before = _before(request.GET)
    except FilterError as exc:
        context.update(filter_error=str(exc), form=_given(request.GET), filters=None)
        return render(request, "dashboards/explorer.html", context, status=400)
    asked = {name: request.GET.get(name) for name in FILTER_PARAMETERS if name in request.GET}
    if asked != filters.query_params() or request.GET.get("before") == "":
        # The form sends every field, empty ones too: the URL a person keeps or shares names
        # only the filters in force, in one spelling.
        canonical = _canonical(filters, before)
        return HttpResponseRedirect(request.path + ("?" + canonical if canonical else ""))
    wanted = filters.decision_filters()
    counts = explorer_counts(team_id=team.id, filters=wanted)
    context.update(filters=filters, form=filters.form_values(), counts=counts, query=filters.query_string())
    if request.htmx and request.htmx.target == COUNTS_TARGET:
        return render(request, "dashboards/_explorer_counts.html", context)
    # The head is read before the rows: a decision committed in between is then both on the page
    # and sent by the socket, and static/js/live.js keeps one; the other order could lose it.
    decisions_head, events_head = chain_heads_of(team_id=team.id)
    page = explorer_page(team_id=team.id, filters=wanted, before=before)
    newest = before is None
    newer_before = None
    if before is not None:
        newer_before = explorer_newer_before(team_id=team.id, filters=wanted, before=before)
    context.update(
        rows=page.rows,
        older_before=page.older_before,
        newer_before=newer_before,
        newest=newest,
        live_query=socket_query(
            kinds=[Kind.DECISIONS, Kind.APPROVALS],
            team_slug=team.slug,
            rows=newest,
            filters=filters,
            after_decisions=decisions_head,
            after_events=events_head,
        ),
        live_after_decisions=decisions_head,
        live_after_events=events_head,
        now=timezone.now(),
    )
    return render(request, "dashboards/explorer.html", context)


@login_required
@require_safe
def decisions_export_file(request: AuthenticatedHttpRequest, slug: str) -> HttpResponseBase:
    """The filtered decisions as a file (``?format=csv`` or ``json``, the page's filters): the
    API's export (audit/export.py), streamed, for any member who may see the explorer."""
    access = team_access_or_404(request, slug)
    file_format = str(request.GET.get("format") or EXPORT_DEFAULT_FORMAT)
    try:
        if file_format not in FORMATS:
            raise FilterError(f"format: {file_format!r} is not one of {', '.join(sorted(FORMATS))}")
        filters = ExplorerFilters.from_params(request.GET)
    except FilterError as exc:
        response = HttpResponse(f"{exc}\n", status=400, content_type="text/plain; charset=utf-8")
        response["Cache-Control"] = "no-store"
        return response
    stream, content_type = decisions_export(
        team_id=access.team.id, filters=filters.decision_filters(), format=file_format
    )
    streamed = StreamingHttpResponse(stream, content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    streamed["Content-Disposition"] = (
        f'attachment; filename="decisions-{access.team.slug}-{stamp}.{file_format}"'
    )
    # The decisions are the team's own: no shared cache, nor the browser's, keeps a copy.
    streamed["Cache-Control"] = "no-store"
    return streamed
