"""The policies page of a team (Django sessions + htmx): version history, the active version, a
YAML editor that validates as you type, diffs, impact preview, fixture results, publish and
roll back, and the team's per-tool policies (team admins create, replace, (de)activate and
delete them with a JSON body in the SDK's shape).

Thin on purpose: reads come from ``policies.selectors``, writes from ``policies.services``
(the same ones the rule-set API calls), who may publish from ``policies.permissions``.
Domain errors become messages on the page with their status code, never a 500.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from common.errors import NUL_MESSAGE, ApplicationError, InvalidInput, NotFound, has_escaped_nul
from policies import selectors, services, source_worker
from policies.engine import (
    FixtureResult,
    Problem,
    RuleSetError,
    compile_rule_set,
    run_fixtures,
)
from policies.engine.errors import RuleSetTooLarge
from policies.limits import RuleSetTooLargeError, rule_set_limits
from policies.models import PolicyDraft, RuleSetPublication, RuleSetVersion, ToolPolicy
from policies.permissions import (
    Actor,
    Identities,
    actor_identities,
    ensure_may_decide_policy_draft,
    ensure_may_manage_tool_policies,
    ensure_may_publish_rule_set,
    four_eyes_refusal,
    is_same_actor,
    rule_set_publish_refusal,
)
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


def _version(access: TeamAccess, number: int) -> RuleSetVersion:
    try:
        return selectors.rule_set_version_get(team_id=access.team.id, number=number)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def _draft(access: TeamAccess, draft_id: uuid.UUID) -> PolicyDraft:
    try:
        return selectors.policy_draft_get(team_id=access.team.id, draft_id=draft_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def _active_version(access: TeamAccess) -> RuleSetVersion | None:
    return selectors.rule_set_versions_of_team(team_id=access.team.id).filter(is_active=True).first()


def _tool_policy(access: TeamAccess, policy_id: uuid.UUID) -> ToolPolicy:
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


def _check_source(source: str) -> SourceCheck:
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


def _tool_policy_body(policy: ToolPolicy) -> str:
    """The policy as the create and replace forms (and ``POST /v1/policies``) take it."""
    body = {"toolName": policy.tool_name, "mode": policy.mode, "constraints": policy.constraints}
    return json.dumps(body, indent=2, ensure_ascii=False)


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"the body is not JSON: {name} is not a JSON number", code="malformed_json")


def _json_body(text: str) -> Any:
    """The form's body, read as strictly as the API reads one (``common.parsers``: no NaN or
    Infinity, no NUL, which PostgreSQL cannot store)."""
    if "\x00" in text or has_escaped_nul(text.encode("utf-8")):
        raise InvalidInput(NUL_MESSAGE)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", code="malformed_json"
        ) from exc
    except RecursionError as exc:
        raise InvalidInput(
            "the body is not JSON this server reads: it nests too deeply", code="malformed_json"
        ) from exc


def _errors_of(exc: ApplicationError) -> list[dict[str, Any]]:
    """Every problem of a refused body with its path (the services list them in ``details``)."""
    if isinstance(exc.details, dict) and isinstance(exc.details.get("errors"), list):
        return exc.details["errors"]
    return []


def _publish_choice(
    access: TeamAccess, user: Any, version: RuleSetVersion, identities: Identities | None = None
) -> dict[str, Any]:
    """What the publish button of ``version`` says, and why it is disabled (if it is)."""
    return {
        "version": version,
        "is_active": version.is_active,
        # As the service will record it: back to a version that was active before.
        "is_rollback": version.was_active and not version.is_active,
        "refusal": rule_set_publish_refusal(access=access, user=user, version=version, identities=identities),
    }


@dataclass
class DraftRow:
    draft: PolicyDraft
    refusal: str | None  # why this person may not approve it (four-eyes), or None


def _draft_row(draft: PolicyDraft, user: Any, identities: Identities) -> DraftRow:
    proposer = Actor(draft.created_by_user_id, draft.created_by_api_key_id)
    refusal = None
    if is_same_actor(proposer=proposer, identities=identities):
        refusal = four_eyes_refusal(actor=Actor.of(user=user), did="proposed this draft", then="approve it")
    return DraftRow(draft, refusal)


def _render_page(
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
    active = _active_version(access)
    if check is None:
        start = request.GET.get("from", "")
        if start.isdigit():
            check = _check_source(_version(access, int(start)).source_text)
        else:
            check = _check_source(active.source_text if active is not None else STARTER_SOURCE)
    diff_to = versions[0].number if versions else None
    diff_from = active.number if active is not None and active.number != diff_to else None
    if diff_from is None and len(versions) > 1:
        diff_from = versions[1].number
    # Who this person is for four-eyes (their keys too), once for every button on the page.
    identities = actor_identities(Actor.of(user=request.user))
    open_drafts = selectors.policy_drafts_of_team(team_id=team_id).filter(
        status__in=PolicyDraft.OPEN_STATUSES
    )
    context = {
        "access": access,
        "team": access.team,
        "active": active,
        "rows": [_publish_choice(access, request.user, v, identities) for v in versions],
        "publications": list(selectors.rule_set_publications_of_team(team_id=team_id)[:50]),
        "drafts": [_draft_row(d, request.user, identities) for d in open_drafts],
        "check": check,
        "diff_from": diff_from,
        "diff_to": diff_to,
        "tool_policies": [
            ToolPolicyRow(
                p,
                refused
                if refused is not None and refused.policy_id == p.id
                else ToolPolicyForm(p.id, _tool_policy_body(p)),
            )
            for p in selectors.tool_policies_of_team(team_id=team_id)
        ],
        "new_tool_policy": refused
        if refused is not None and refused.policy_id is None
        else ToolPolicyForm(None, STARTER_TOOL_POLICY),
    }
    return render(request, "policies/page.html", context, status=status)


def _render_version(
    request: AuthenticatedHttpRequest, access: TeamAccess, version: RuleSetVersion, *, status: int = 200
) -> HttpResponse:
    active = _active_version(access)
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
        "publish": _publish_choice(access, request.user, version),
        "fixtures": _fixture_results(version.document),
        "diff": diff,
        "publications": [
            p
            for p in selectors.rule_set_publications_of_team(team_id=access.team.id)
            if p.version_id == version.pk
        ],
    }
    return render(request, "policies/version.html", context, status=status)


def _fragment_or_page(
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
    return _render_page(request, team_access_or_404(request, slug))


@login_required
@require_POST
def policies_validate(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The editor's live check (htmx, as you type): every problem at its line, or fixture results."""
    access = team_access_or_404(request, slug)
    check = _check_source(request.POST.get("source", ""))
    return render(
        request, "policies/_validation.html", {"access": access, "team": access.team, "check": check}
    )


@login_required
@require_POST
def policies_version_create(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Save the editor's source as a new draft version, authored by the person saving it."""
    access = team_access_or_404(request, slug)
    check = _check_source(request.POST.get("source", ""))
    if check.too_large is not None:
        messages.error(request, f"Not saved: {check.too_large.message}")
        return _render_page(request, access, check=check, status=check.too_large.status_code)
    if check.problems:
        # The service would refuse it too; checking here keeps the text in the editor with
        # every problem next to its line.
        count = len(check.problems)
        messages.error(
            request, f"Not saved: the rule set has {count} problem{pluralize(count)}, listed below."
        )
        return _render_page(request, access, check=check, status=400)
    try:
        version = services.rule_set_version_create(
            team=access.team,
            source_text=check.source,
            content_type="application/yaml",
            author_user=request.user,
        )
    except ApplicationError as exc:
        messages.error(request, f"Not saved: {exc.message}")
        return _render_page(request, access, check=check, status=exc.status_code)
    messages.success(request, f"Saved version {version.number} as a draft.")
    return redirect("policies:version", slug=access.team.slug, number=version.number)


@login_required
@require_safe
def policies_version(request: AuthenticatedHttpRequest, slug: str, number: int) -> HttpResponse:
    access = team_access_or_404(request, slug)
    return _render_version(request, access, _version(access, number))


@login_required
@require_POST
def policies_version_publish(request: AuthenticatedHttpRequest, slug: str, number: int) -> HttpResponse:
    """Publish a version (a rollback when it was active before): team admins only, never its
    own author, and only if its fixtures pass."""
    access = team_access_or_404(request, slug)
    version = _version(access, number)
    try:
        ensure_may_publish_rule_set(access=access, user=request.user, version=version)
        publication = services.rule_set_version_publish(
            version=version, actor_user=request.user, remote_addr=request.META.get("REMOTE_ADDR")
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        version.refresh_from_db()
        return _render_version(request, access, version, status=exc.status_code)
    if publication.kind == RuleSetPublication.Kind.ROLLBACK:
        previous = publication.previous_version.number if publication.previous_version else None
        messages.success(request, f"Rolled back to version {version.number} (from version {previous}).")
    else:
        messages.success(request, f"Published version {version.number}; it is now active.")
    return redirect("policies:version", slug=access.team.slug, number=version.number)


@login_required
@require_safe
def policies_diff(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Rule by rule, between any two versions (``?from=A&to=B``)."""
    access = team_access_or_404(request, slug)
    before, after = request.GET.get("from", ""), request.GET.get("to", "")
    if not (before.isdigit() and after.isdigit()):
        raise Http404("choose two versions to compare")
    try:
        diff = selectors.rule_set_versions_diff(team_id=access.team.id, before=int(before), after=int(after))
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return _fragment_or_page(
        request, access, "policies/_diff.html", f"Version {before} → {after}", {"diff": diff}
    )


@login_required
@require_safe
def policies_impact(request: AuthenticatedHttpRequest, slug: str, number: int) -> HttpResponse:
    """What would change if this version were active: the team's recent decisions replayed."""
    access = team_access_or_404(request, slug)
    version = _version(access, number)
    preview = selectors.rule_set_impact_preview(team_id=access.team.id, document=version.document)
    return _fragment_or_page(
        request,
        access,
        "policies/_impact.html",
        f"Impact of version {version.number}",
        {"version": version, "preview": preview},
    )


@login_required
@require_POST
def policies_draft_approve(request: AuthenticatedHttpRequest, slug: str, draft_id: uuid.UUID) -> HttpResponse:
    """Approve a proposed draft: its rules merged into the active version, published at once
    (team admins only; never the person who proposed it; only if the fixtures pass)."""
    access = team_access_or_404(request, slug)
    draft = _draft(access, draft_id)
    try:
        ensure_may_decide_policy_draft(access=access)
        approved = services.policy_draft_approve(
            draft=draft, actor_user=request.user, remote_addr=request.META.get("REMOTE_ADDR")
        )
    except ApplicationError as exc:
        messages.error(request, f"Draft “{draft.name}” not approved: {exc.message}")
        return _render_page(request, access, status=exc.status_code)
    version = approved.result_version
    if version is None:  # moved to review rather than published (only API keys get that)
        messages.info(request, f"Draft “{draft.name}” now awaits review.")
        return redirect("policies:page", slug=access.team.slug)
    messages.success(
        request, f"Approved draft “{draft.name}”: published as version {version.number}, now active."
    )
    return redirect("policies:version", slug=access.team.slug, number=version.number)


@login_required
@require_POST
def policies_draft_reject(request: AuthenticatedHttpRequest, slug: str, draft_id: uuid.UUID) -> HttpResponse:
    access = team_access_or_404(request, slug)
    draft = _draft(access, draft_id)
    try:
        ensure_may_decide_policy_draft(access=access)
        services.policy_draft_reject(
            draft=draft, reason=request.POST.get("reason", "").strip(), actor_user=request.user
        )
    except ApplicationError as exc:
        messages.error(request, f"Draft “{draft.name}” not rejected: {exc.message}")
        return _render_page(request, access, status=exc.status_code)
    messages.success(request, f"Rejected draft “{draft.name}”.")
    return redirect("policies:page", slug=access.team.slug)


# --- Per-tool policies ---------------------------------------------------------------------------
# The same services as /v1/policies, with the person as the actor: on a team that requires
# review this is the only way to change a tool policy.


def _tool_policies_page(access: TeamAccess) -> HttpResponse:
    return redirect(reverse("policies:page", args=[access.team.slug]) + "#tool-policies")


@login_required
@require_POST
def policies_tool_policy_create(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Create a tool policy from a JSON body in the SDK's shape; it is active at once."""
    access = team_access_or_404(request, slug)
    text = request.POST.get("body", "")
    try:
        ensure_may_manage_tool_policies(access=access)
        policy = services.tool_policy_create(
            team_id=access.team.id,
            data=_json_body(text),
            actor_user=request.user,
            remote_addr=request.META.get("REMOTE_ADDR"),
        )
    except ApplicationError as exc:
        messages.error(request, f"Tool policy not created: {exc.message}")
        form = ToolPolicyForm(None, text, _errors_of(exc))
        return _render_page(request, access, refused=form, status=exc.status_code)
    messages.success(request, f"Created the policy of {policy.tool_name} (version 1); it applies now.")
    return _tool_policies_page(access)


@login_required
@require_POST
def policies_tool_policy_replace(
    request: AuthenticatedHttpRequest, slug: str, policy_id: uuid.UUID
) -> HttpResponse:
    """Replace a tool policy's mode and constraints with a JSON body (``PUT /v1/policies/{tool}``'s)."""
    access = team_access_or_404(request, slug)
    policy = _tool_policy(access, policy_id)
    text = request.POST.get("body", "")
    try:
        ensure_may_manage_tool_policies(access=access)
        updated = services.tool_policy_update(
            policy=policy,
            data=_json_body(text),
            actor_user=request.user,
            remote_addr=request.META.get("REMOTE_ADDR"),
        )
    except ApplicationError as exc:
        messages.error(request, f"Policy of {policy.tool_name} not changed: {exc.message}")
        form = ToolPolicyForm(policy.id, text, _errors_of(exc))
        return _render_page(request, access, refused=form, status=exc.status_code)
    messages.success(request, f"Replaced the policy of {updated.tool_name}: now version {updated.version}.")
    return _tool_policies_page(access)


@login_required
@require_POST
def policies_tool_policy_set_active(
    request: AuthenticatedHttpRequest, slug: str, policy_id: uuid.UUID, *, is_active: bool
) -> HttpResponse:
    access = team_access_or_404(request, slug)
    policy = _tool_policy(access, policy_id)
    try:
        ensure_may_manage_tool_policies(access=access)
        services.tool_policy_set_active(
            policy=policy,
            is_active=is_active,
            actor_user=request.user,
            remote_addr=request.META.get("REMOTE_ADDR"),
        )
    except ApplicationError as exc:
        messages.error(request, f"Policy of {policy.tool_name} not changed: {exc.message}")
        return _render_page(request, access, status=exc.status_code)
    if is_active:
        messages.success(request, f"The policy of {policy.tool_name} is active: validate enforces it.")
    else:
        messages.success(request, f"The policy of {policy.tool_name} is inactive: validate ignores it.")
    return _tool_policies_page(access)


@login_required
@require_POST
def policies_tool_policy_delete(
    request: AuthenticatedHttpRequest, slug: str, policy_id: uuid.UUID
) -> HttpResponse:
    access = team_access_or_404(request, slug)
    policy = _tool_policy(access, policy_id)
    try:
        ensure_may_manage_tool_policies(access=access)
        services.tool_policy_delete(
            policy=policy, actor_user=request.user, remote_addr=request.META.get("REMOTE_ADDR")
        )
    except ApplicationError as exc:
        messages.error(request, f"Policy of {policy.tool_name} not deleted: {exc.message}")
        return _render_page(request, access, status=exc.status_code)
    messages.success(
        request, f"Deleted the policy of {policy.tool_name}; the rule set alone decides its calls now."
    )
    return _tool_policies_page(access)
