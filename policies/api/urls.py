from django.urls import path

from policies.api import views

urlpatterns = [
    path("tools/register", views.ToolsRegisterView.as_view(), name="tools-register"),
    path("tools", views.ToolsListView.as_view(), name="tools"),
    path("policies/<str:tool_name>", views.ToolPolicyView.as_view(), name="tool-policy"),
]
