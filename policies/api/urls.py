from django.urls import path, re_path

from policies.api import policy_views, rule_set_views, views

urlpatterns = [
    path("tools/register", views.ToolsRegisterView.as_view(), name="tools-register"),
    path("tools", views.ToolsListView.as_view(), name="tools"),
    # Order matters: "export" and the activation suffixes before the catch-all tool name, which
    # may contain "/" (the SDK percent-encodes it; the server decodes before routing).
    path("policies", policy_views.PoliciesView.as_view(), name="policies"),
    path("policies/export", policy_views.PoliciesExportView.as_view(), name="policies-export"),
    re_path(
        r"^policies/(?P<tool_name>.+)/activate$",
        policy_views.ToolPolicyActivateView.as_view(),
        name="tool-policy-activate",
    ),
    re_path(
        r"^policies/(?P<tool_name>.+)/deactivate$",
        policy_views.ToolPolicyDeactivateView.as_view(),
        name="tool-policy-deactivate",
    ),
    path("policies/<path:tool_name>", policy_views.ToolPolicyView.as_view(), name="tool-policy"),
    path("policy-drafts", policy_views.PolicyDraftsView.as_view(), name="policy-drafts"),
    path("policy-drafts/<str:draft_id>", policy_views.PolicyDraftView.as_view(), name="policy-draft"),
    path(
        "policy-drafts/<str:draft_id>/approve",
        policy_views.PolicyDraftApproveView.as_view(),
        name="policy-draft-approve",
    ),
    path(
        "policy-drafts/<str:draft_id>/reject",
        policy_views.PolicyDraftRejectView.as_view(),
        name="policy-draft-reject",
    ),
    path("rule-sets", rule_set_views.RuleSetsView.as_view(), name="rule-sets"),
    path("rule-sets/<int:version>", rule_set_views.RuleSetVersionView.as_view(), name="rule-set"),
    path(
        "rule-sets/<int:version>/publish",
        rule_set_views.RuleSetPublishView.as_view(),
        name="rule-set-publish",
    ),
    path(
        "rule-sets/<int:version>/preview",
        rule_set_views.RuleSetPreviewView.as_view(),
        name="rule-set-preview",
    ),
    path(
        "rule-sets/<int:before>/diff/<int:after>",
        rule_set_views.RuleSetDiffView.as_view(),
        name="rule-set-diff",
    ),
]
