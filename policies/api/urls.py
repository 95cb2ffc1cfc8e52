from django.urls import path

from policies.api import rule_set_views, views

urlpatterns = [
    path("tools/register", views.ToolsRegisterView.as_view(), name="tools-register"),
    path("tools", views.ToolsListView.as_view(), name="tools"),
    path("policies/<str:tool_name>", views.ToolPolicyView.as_view(), name="tool-policy"),
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
