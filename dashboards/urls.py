"""The dashboard's pages, mounted under /dashboard/ in the ``dashboard`` namespace (veto_cloud/urls.py).

Per team: ``teams/<slug>/`` the overview, ``teams/<slug>/decisions/`` the explorer and one
decision's page, ``teams/<slug>/audit/`` the audit page (audit's own views). The live path
(websocket) is in dashboards/routing.py.
"""

from django.urls import include, path

from dashboards.views import decision, explorer, home, overview

urlpatterns = [
    path("", home.dashboard_home, name="home"),
    path("teams/<slug:slug>/", overview.overview_page, name="overview"),
    path("teams/<slug:slug>/overview/<str:panel>/", overview.overview_panel, name="overview-panel"),
    path("teams/<slug:slug>/decisions/", explorer.decisions_page, name="decisions"),
    path("teams/<slug:slug>/decisions/export/", explorer.decisions_export_file, name="decisions-export"),
    path("teams/<slug:slug>/decisions/<uuid:decision_id>/", decision.decision_page, name="decision"),
    path("", include("audit.urls")),
]
