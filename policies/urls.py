"""The policies pages, mounted under /dashboard/teams/ (see veto_cloud/urls.py)."""

from django.urls import path

from policies import views

urlpatterns = [
    path("", views.policies_teams, name="teams"),
    path("<slug:slug>/policies/", views.policies_page, name="page"),
    path("<slug:slug>/policies/validate", views.policies_validate, name="validate"),
    path("<slug:slug>/policies/versions", views.policies_version_create, name="version-create"),
    path("<slug:slug>/policies/versions/<int:number>/", views.policies_version, name="version"),
    path(
        "<slug:slug>/policies/versions/<int:number>/publish",
        views.policies_version_publish,
        name="version-publish",
    ),
    path("<slug:slug>/policies/versions/<int:number>/impact", views.policies_impact, name="impact"),
    path("<slug:slug>/policies/diff", views.policies_diff, name="diff"),
    path(
        "<slug:slug>/policies/drafts/<uuid:draft_id>/approve",
        views.policies_draft_approve,
        name="draft-approve",
    ),
    path(
        "<slug:slug>/policies/drafts/<uuid:draft_id>/reject",
        views.policies_draft_reject,
        name="draft-reject",
    ),
    path("<slug:slug>/policies/tools/", views.policies_tool_policy_create, name="tool-policy-create"),
    path(
        "<slug:slug>/policies/tools/<uuid:policy_id>/replace",
        views.policies_tool_policy_replace,
        name="tool-policy-replace",
    ),
    path(
        "<slug:slug>/policies/tools/<uuid:policy_id>/activate",
        views.policies_tool_policy_set_active,
        {"is_active": True},
        name="tool-policy-activate",
    ),
    path(
        "<slug:slug>/policies/tools/<uuid:policy_id>/deactivate",
        views.policies_tool_policy_set_active,
        {"is_active": False},
        name="tool-policy-deactivate",
    ),
    path(
        "<slug:slug>/policies/tools/<uuid:policy_id>/delete",
        views.policies_tool_policy_delete,
        name="tool-policy-delete",
    ),
]
