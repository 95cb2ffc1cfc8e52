"""The policies pages, mounted under /dashboard/teams/ (see veto_cloud/urls.py)."""

from django.urls import path

from policies.views import drafts, page, rule_sets, tool_policies

urlpatterns = [
    path("", page.policies_teams, name="teams"),
    path("<slug:slug>/policies/", page.policies_page, name="page"),
    path("<slug:slug>/policies/validate", page.policies_validate, name="validate"),
    path("<slug:slug>/policies/versions", rule_sets.policies_version_create, name="version-create"),
    path("<slug:slug>/policies/versions/<int:number>/", rule_sets.policies_version, name="version"),
    path(
        "<slug:slug>/policies/versions/<int:number>/publish",
        rule_sets.policies_version_publish,
        name="version-publish",
    ),
    path("<slug:slug>/policies/versions/<int:number>/impact", rule_sets.policies_impact, name="impact"),
    path("<slug:slug>/policies/diff", rule_sets.policies_diff, name="diff"),
    path(
        "<slug:slug>/policies/drafts/<uuid:draft_id>/approve",
        drafts.policies_draft_approve,
        name="draft-approve",
    ),
    path(
        "<slug:slug>/policies/drafts/<uuid:draft_id>/reject",
        drafts.policies_draft_reject,
        name="draft-reject",
    ),
    path("<slug:slug>/policies/tools/", tool_policies.policies_tool_policy_create, name="tool-policy-create"),
    path(
        "<slug:slug>/policies/tools/<uuid:policy_id>/replace",
        tool_policies.policies_tool_policy_replace,
        name="tool-policy-replace",
    ),
    path(
        "<slug:slug>/policies/tools/<uuid:policy_id>/activate",
        tool_policies.policies_tool_policy_set_active,
        {"is_active": True},
        name="tool-policy-activate",
    ),
    path(
        "<slug:slug>/policies/tools/<uuid:policy_id>/deactivate",
        tool_policies.policies_tool_policy_set_active,
        {"is_active": False},
        name="tool-policy-deactivate",
    ),
    path(
        "<slug:slug>/policies/tools/<uuid:policy_id>/delete",
        tool_policies.policies_tool_policy_delete,
        name="tool-policy-delete",
    ),
]
