"""The policies page of a team (Django sessions + htmx), and what every policies view renders:
version history, the active version, a YAML editor that validates as you type, the open drafts
and the team's per-tool policies. The actions live beside it by aggregate: ``rule_sets``
(save, publish, diff, impact), ``drafts`` (approve, reject) and ``tool_policies`` (create,
replace, (de)activate, delete).

Thin on purpose: reads come from ``policies.selectors``, writes from ``policies.services``
(the same ones the API calls), who may publish from ``policies.permissions``.
Domain errors become messages on the page with their status code, never a 500.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from common.errors import NotFound
from policies import selectors, source_worker
from policies.engine import (
    FixtureResult,
    Problem,
    RuleSetError,
    compile_rule_set,
    run_fixtures,
)
from policies.engine.errors import RuleSetTooLarge
from policies.limits import RuleSetTooLargeError, rule_set_limits
from policies.models import PolicyDraft, RuleSetVersion, ToolPolicy
from policies.permissions import policy_draft_approve_refusal, rule_set_publish_refusal
from policies.views.tool_policy_summary import SummaryLine, tool_policy_summary
from tenancy.actor import Actor, Identities, actor_identities
from tenancy.selectors import TeamAccess, teams_visible_to
from tenancy.web import AuthenticatedHttpRequest, team_access_or_404

STARTER_SOURCE = """\
# Rules are checked in order; the first block or require_approval wins.
rules:
  - name: example_rule
    tool: run_data_export
    when: args.include_pii == true
    action: require_approval
"""
STARTER_TOOL_POLICY = """\
{
  "toolName": "transfer_funds",
  "mode": "deterministic",
  "constraints": [
    {"argumentName": "amount", "enabled": true, "greaterThan": 0, "maximum": 1000}
  ]
}
"""


def version_or_404(access: TeamAccess, number: int) -> RuleSetVersion:
    try:
        return selectors.rule_set_version_get(team_id=access.team.id, number=number)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def draft_or_404(access: TeamAccess, draft_id: uuid.UUID) -> PolicyDraft:
    try:
        return selectors.policy_draft_get(team_id=access.team.id, draft_id=draft_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def active_version(access: TeamAccess) -> RuleSetVersion | None:
    return selectors.rule_set_versions_of_team(team_id=access.team.id).filter(is_active=True).first()


def tool_policy_or_404(access: TeamAccess, policy_id: uuid.UUID) -> ToolPolicy:
    try:
        return selectors.tool_policy_get_by_id(team_id=access.team.id, policy_id=policy_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def _fixture_results(document: dict[str, Any]) -> list[FixtureResult]:
    # As publishing runs them (policies.services.rule_set_version_publish): now, on the real engine.
    return run_fixtures(compile_rule_set(document), document.get("fixtures", []), now=timezone.now())


@dataclass
class LineProblems:
    line: int | None
    text: str
    problems: list[Problem] = field(default_factory=list)


@dataclass
class SourceCheck:
    """The editor's source, checked: every problem next to its line, or the fixture results."""

    source: str
    problems: list[Problem]
    by_line: list[LineProblems]
    rules: int = 0
    fixtures: list[FixtureResult] = field(default_factory=list)
    # Set when the source is over a published limit (saving it answers 413 or 422).
    too_large: RuleSetTooLargeError | None = None

    @property
    def fixtures_failed(self) -> int:
        return sum(1 for r in self.fixtures if not r.passed)


def check_source(source: str) -> SourceCheck:
    try:
        document, fixtures = source_worker.check_source(source, limits=rule_set_limits(), now=timezone.now())
    except RuleSetError as exc:
        # Every way a source can fail to load is a RuleSetError naming a line (policies.engine.source).
        problems = exc.problems
        lines = source.splitlines()
        grouped: dict[int | None, LineProblems] = {}
        for problem in problems:
            # A syntax error is listed where its construct starts and where the parser noticed
            # (an unclosed [ is noticed at the next line that cannot be in it).
            noticed = problem.noticed_line
            places = [problem.line] + ([noticed] if noticed is not None and noticed != problem.line else [])
            for index, at in enumerate(places):
                # len + 1: the empty line after a final newline, where end-of-text errors point
                line = at if at is not None and 1 <= at <= len(lines) + 1 else None
                if index and line is None:
                    continue
                text = lines[line - 1] if line is not None and line <= len(lines) else ""
                grouped.setdefault(line, LineProblems(line, text)).problems.append(problem)
        ordered = sorted(grouped.values(), key=lambda item: (item.line is not None, item.line or 0))
        too_large = RuleSetTooLargeError(exc) if isinstance(exc, RuleSetTooLarge) else None
        return SourceCheck(source, problems, ordered, too_large=too_large)
    return SourceCheck(source, [], [], len(document.get("rules", [])), fixtures)


@dataclass
class ToolPolicyForm:
    """A tool policy's form (``policy_id`` None: the create form) with the JSON it shows and,
    when it was refused, every problem with its path; a refused body stays in its textarea."""

    policy_id: uuid.UUID | None
    body: str
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ToolPolicyRow:
    policy: ToolPolicy
    form: ToolPolicyForm
    summary: list[SummaryLine] = field(default_factory=list)


def _tool_policy_body(policy: ToolPolicy) -> str:
    """The policy as the create and replace forms (and ``POST /v1/policies``) take it: every
    field of the SDK's model, null where unset, so a person sees each one there is to edit (a
    replace keeps a field left out, as ``PUT /v1/policies/{tool}`` does; null clears it)."""
    body = {
        "toolName": policy.tool_name,
        "mode": policy.mode,
        "constraints": policy.constraints,
        "sessionConstraints": policy.session_constraints,
        "rateLimits": policy.rate_limits,
        "outputRules": policy.output_rules,
        "llmConfig": policy.llm_config,
    }
    return json.dumps(body, indent=2, ensure_ascii=False)


def _publish_choice(
    access: TeamAccess, actor: Actor, version: RuleSetVersion, identities: Identities | None = None
) -> dict[str, Any]:
    """What the publish button of ``version`` says, and why it is disabled (if it is)."""
    return {
        "version": version,
        "is_active": version.is_active,
        # As the service will record it: back to a version that was active before.
        "is_rollback": version.was_active and not version.is_active,
        "refusal": rule_set_publish_refusal(
            access=access, actor=actor, version=version, identities=identities
        ),
    }


@dataclass
class DraftRow:
    draft: PolicyDraft
    refusal: str | None  # why this person may not approve it (four-eyes), or None


def _draft_row(draft: PolicyDraft, actor: Actor, identities: Identities) -> DraftRow:
    return DraftRow(draft, policy_draft_approve_refusal(actor=actor, draft=draft, identities=identities))


def render_page(
    request: AuthenticatedHttpRequest,
    access: TeamAccess,
    *,
    check: SourceCheck | None = None,
    refused: ToolPolicyForm | None = None,
    status: int = 200,
) -> HttpResponse:
    team_id = access.team.id
    # The history lists metadata only; sources and documents can be large.
    versions = list(selectors.rule_set_versions_of_team(team_id=team_id).defer("source_text", "document"))
    active = active_version(access)
    if check is None:
        start = request.GET.get("from", "")
        if start.isdigit():
            check = check_source(version_or_404(access, int(start)).source_text)
        else:
            check = check_source(active.source_text if active is not None else STARTER_SOURCE)
    diff_to = versions[0].number if versions else None
    diff_from = active.number if active is not None and active.number != diff_to else None
    if diff_from is None and len(versions) > 1:
        diff_from = versions[1].number
    # Who this person is for four-eyes (their keys too), once for every button on the page.
    actor = Actor.of_request(request)
    identities = actor_identities(actor)
    open_drafts = selectors.policy_drafts_of_team(team_id=team_id).filter(
        status__in=PolicyDraft.OPEN_STATUSES
    )
    context = {
        "access": access,
        "team": access.team,
        "active": active,
        "rows": [_publish_choice(access, actor, v, identities) for v in versions],
        "publications": list(selectors.rule_set_publications_of_team(team_id=team_id)[:50]),
        "drafts": [_draft_row(d, actor, identities) for d in open_drafts],
        "check": check,
        "diff_from": diff_from,
        "diff_to": diff_to,
        "tool_policies": [
            ToolPolicyRow(
                p,
                refused
                if refused is not None and refused.policy_id == p.id
                else ToolPolicyForm(p.id, _tool_policy_body(p)),
                tool_policy_summary(p),
            )
            for p in selectors.tool_policies_of_team(team_id=team_id)
        ],
        "new_tool_policy": refused
        if refused is not None and refused.policy_id is None
        else ToolPolicyForm(None, STARTER_TOOL_POLICY),
    }
    return render(request, "policies/page.html", context, status=status)


def render_version(
    request: AuthenticatedHttpRequest, access: TeamAccess, version: RuleSetVersion, *, status: int = 200
) -> HttpResponse:
    active = active_version(access)
    diff = None
    if active is not None and active.number != version.number:
        diff = selectors.rule_set_versions_diff(
            team_id=access.team.id, before=active.number, after=version.number
        )
    context = {
        "access": access,
        "team": access.team,
        "version": version,
        "active": active,
        "publish": _publish_choice(access, Actor.of_request(request), version),
        "fixtures": _fixture_results(version.document),
        "diff": diff,
        "publications": [
            p
            for p in selectors.rule_set_publications_of_team(team_id=access.team.id)
            if p.version_id == version.pk
        ],
    }
    return render(request, "policies/version.html", context, status=status)


def fragment_or_page(
    request: AuthenticatedHttpRequest, access: TeamAccess, fragment: str, title: str, context: dict[str, Any]
) -> HttpResponse:
    """htmx asks for the fragment; a plain link (or no JavaScript) gets it inside a page."""
    context = {"access": access, "team": access.team, **context}
    if request.htmx:
        return render(request, fragment, context)
    return render(request, "policies/fragment_page.html", {**context, "fragment": fragment, "title": title})


@login_required
@require_safe
def policies_teams(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The teams whose policies the person may see."""
    return render(request, "policies/teams.html", {"teams": list(teams_visible_to(user=request.user))})


@login_required
@require_safe
def policies_page(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    return render_page(request, team_access_or_404(request, slug))


@login_required
@require_POST
def policies_validate(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The editor's live check (htmx, as you type): every problem at its line, or fixture results."""
    access = team_access_or_404(request, slug)
    check = check_source(request.POST.get("source", ""))
    return render(
        request, "policies/_validation.html", {"access": access, "team": access.team, "check": check}
    )
