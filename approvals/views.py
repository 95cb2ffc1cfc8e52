"""The approvals pages (Django sessions + htmx): the queue of what waits for me, one approval with
its arguments and trail, approve / deny, and the history of decided ones.

Thin on purpose: reads from ``approvals.selectors``, the decision through
``approvals.services.approval_resolve`` (the same service the API calls, which also decides who
may act). Every form works without JavaScript; htmx only swaps the part that changed. Domain
errors become messages with their status code, never a 500.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST, require_safe

from approvals import selectors, services
from approvals.display import ArgumentNode, argument_tree, context_value
from approvals.forms import DecisionForm, QueueFilterForm
from approvals.models import Approval, ApprovalEvent
from common.errors import ApplicationError, NotFound
from tenancy.actor import Actor
from tenancy.web import AuthenticatedHttpRequest


def _wants_fragment(request: AuthenticatedHttpRequest) -> bool:
    # A history restore asks for the whole page even though it comes from htmx.
    return bool(request.htmx) and not request.htmx.history_restore_request


# A live element also refreshes itself at the next deadline it shows (an expiry swept by a
# process whose events reach no browser, as in `make run`'s embedded mode, is applied by the
# first read past it: this one). Browsers fire a timer of more than 2**31 ms at once, so a far
# deadline is looked at once a day instead; +1 s lands past the deadline, not on it.
_DEADLINE_REFRESH_MAX_SECONDS = 86_400


def _deadline_refresh_seconds(seconds_left: float | None) -> int | None:
    if seconds_left is None:
        return None
    return min(math.ceil(max(0.0, seconds_left)) + 1, _DEADLINE_REFRESH_MAX_SECONDS)


def _visible(request: AuthenticatedHttpRequest, approval_id: uuid.UUID) -> Approval:
    try:
        return selectors.approval_get_visible_to(user=request.user, approval_id=approval_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@dataclass(frozen=True, slots=True)
class QueueRow:
    approval: Approval
    seconds_left: float
    model: str | None
    environment: str | None


@dataclass(frozen=True, slots=True)
class QueueChoices:
    """What the filters offer: the groups, tools and teams of the whole queue (plus a chosen
    value that is no longer in it, so the select still shows what is applied)."""

    groups: list[str]
    tools: list[str]
    teams: list[str]

    @classmethod
    def of(cls, summary: selectors.QueueSummary, chosen: dict[str, str]) -> QueueChoices:
        def values(found: list[str], key: str) -> list[str]:
            return sorted({*found, chosen[key]} if chosen.get(key) else set(found))

        return cls(
            groups=values(summary.groups, "group"),
            tools=values(summary.tools, "tool"),
            teams=values(summary.teams, "team"),
        )


@login_required
@require_safe
def approvals_queue(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Pending approvals the person may decide, oldest first (at most ``selectors.QUEUE_PAGE``
    of them); filters by group, tool and team. The total, the filters' choices and the next
    deadline are the whole queue's, counted in the database (100,000 pending approvals:
    benchmarks/scale_10m.py)."""
    form = QueueFilterForm(request.GET)
    # What passed its deadline is settled first: expired ones leave the queue, escalated ones
    # join their new approvers' queue at the deadline, not at the next sweep.
    services.approvals_expire_due(team_ids=selectors.approval_team_ids_of(user=request.user))
    summary = selectors.approvals_queue_summary_for(user=request.user)
    filters = form.filters()
    shown = selectors.approvals_queue_for(user=request.user, filters=filters, limit=selectors.QUEUE_PAGE)
    matching: int  # a CappedCount where it was counted
    if filters == selectors.QueueFilters():
        matching = summary.total
    elif len(shown) < selectors.QUEUE_PAGE:
        matching = len(shown)
    else:
        matching = selectors.approvals_queue_count_for(user=request.user, filters=filters)
    now = timezone.now()
    chosen = {k: v for k, v in form.cleaned_data.items() if v} if form.is_valid() else {}
    next_deadline = (
        None if summary.next_deadline is None else max(0.0, (summary.next_deadline - now).total_seconds())
    )
    context = {
        "form": form,
        "rows": [
            QueueRow(
                approval=a,
                seconds_left=selectors.approval_time_left(a, now),
                model=context_value(a.context, "model"),
                environment=context_value(a.context, "environment"),
            )
            for a in shown
        ],
        "total": summary.total,
        "matching": matching,
        "choices": QueueChoices.of(summary, chosen),
        "chosen": chosen,
        # The results refresh themselves (live-refresh) from this, with the filters they show.
        "refresh_url": reverse("approvals:queue") + (f"?{urlencode(chosen)}" if chosen else ""),
        "refresh_in": _deadline_refresh_seconds(next_deadline),
    }
    template = "approvals/_queue_results.html" if _wants_fragment(request) else "approvals/queue.html"
    response = render(request, template, context, status=200 if form.is_valid() else 400)
    patch_vary_headers(response, ("HX-Request",))
    return response


def _decision_context(
    request: AuthenticatedHttpRequest, approval: Approval, form: DecisionForm | None
) -> dict[str, Any]:
    now = timezone.now()
    trail = selectors.approval_trail(approval=approval)
    is_open = approval.status == Approval.Status.PENDING and approval.expires_at > now
    voters = [e.actor_name for e in trail if e.action == ApprovalEvent.Action.APPROVE]
    may_decide = is_open and selectors.approval_may_decide(approval=approval, user=request.user)
    seconds_left = selectors.approval_time_left(approval, now)
    return {
        "approval": approval,
        # The panel refreshes itself (live-refresh) from this; an answer for the state it
        # already shows is a 204, so an unrelated approval's event leaves a comment being typed.
        "refresh_url": reverse("approvals:detail", args=[approval.id])
        + "?"
        + urlencode({_SHOWN: _panel_state(approval, trail)}),
        "refresh_in": _deadline_refresh_seconds(seconds_left) if is_open else None,
        "trail": trail,
        "voters": voters,
        "has_voted": request.user.get_username() in voters,
        "is_open": is_open,
        "may_decide": may_decide,
        # The service refuses this person's approve (not their deny): the page says so up front.
        "own_request": may_decide and selectors.approval_is_own_request(approval=approval, user=request.user),
        "seconds_left": seconds_left,
        "seconds_to_decide": selectors.approval_seconds_to_decide(approval),
        "form": form or DecisionForm(),
    }


# The query parameter of the panel's refresh: the state the page shows (``_panel_state``).
_SHOWN = "shown"


def _panel_state(approval: Approval, trail: list[ApprovalEvent]) -> str:
    """What the decision panel and the trail show, in one word: every change to an approval
    (vote, refusal, escalation, outcome) appends to its trail."""
    return f"{approval.status}.{trail[-1].pk if trail else 0}"


def _render_detail(
    request: AuthenticatedHttpRequest,
    approval: Approval,
    *,
    form: DecisionForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """The whole page, or (htmx) the decision panel and the trail, which are what a decision changes."""
    context = _decision_context(request, approval, form)
    if _wants_fragment(request):
        shown = request.GET.get(_SHOWN)
        if request.method == "GET" and shown and shown == _panel_state(approval, context["trail"]):
            return HttpResponse(status=204)  # the page is current: nothing to swap
        return render(request, "approvals/_decision_response.html", context, status=status)
    arguments: ArgumentNode = argument_tree(approval.arguments)
    context.update(
        arguments=arguments,
        context_tree=argument_tree(approval.context),
        model=context_value(approval.context, "model"),
        environment=context_value(approval.context, "environment"),
        session_calls=selectors.approval_session_calls(approval=approval),
    )
    return render(request, "approvals/detail.html", context, status=status)


@login_required
@require_safe
def approval_detail(request: AuthenticatedHttpRequest, approval_id: uuid.UUID) -> HttpResponse:
    return _render_detail(request, services.approval_settle_due(approval=_visible(request, approval_id)))


def _outcome_message(outcome: services.ResolveOutcome) -> str:
    approval = outcome.approval
    if approval.status == Approval.Status.DENIED:
        return "Denied: the agent's call is refused."
    if approval.status == Approval.Status.APPROVED:
        return "Approved: the agent's call may run."
    return f"Your approval is recorded; {approval.min_approvals} different people must approve."


@login_required
@require_POST
def approval_decide(request: AuthenticatedHttpRequest, approval_id: uuid.UUID) -> HttpResponse:
    """Approve or deny (a deny needs a comment). Who may is the service's to decide: an ineligible
    person's POST is refused there, and recorded in the trail."""
    approval = _visible(request, approval_id)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Not decided: see the form below.")
        return _render_detail(request, approval, form=form, status=400)
    try:
        outcome = services.approval_resolve(
            approval=approval,
            actor=Actor.of_request(request),
            action=form.cleaned_data["action"],
            comment=form.cleaned_data["comment"],
        )
    except ApplicationError as exc:
        messages.error(request, f"Not decided: {exc.message}")
        approval.refresh_from_db()
        return _render_detail(request, approval, status=exc.status_code)
    messages.success(request, _outcome_message(outcome))
    if _wants_fragment(request):
        return _render_detail(request, outcome.approval)
    return redirect("approvals:detail", approval_id=approval.id)


@login_required
@require_safe
def approvals_badge(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The nav badge alone (the context processor counts it), for its live refresh."""
    return render(request, "approvals/_nav_link.html")


@dataclass(frozen=True, slots=True)
class HistoryRow:
    approval: Approval
    seconds_to_decide: float | None


@login_required
@require_safe
def approvals_history(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Decided approvals of the person's teams, newest first: outcome, who, and how long it took."""
    services.approvals_expire_due(team_ids=selectors.approval_team_ids_of(user=request.user))
    rows = [
        HistoryRow(approval=a, seconds_to_decide=selectors.approval_seconds_to_decide(a))
        for a in selectors.approvals_resolved_for(user=request.user)
    ]
    return render(request, "approvals/history.html", {"rows": rows})
