from django.urls import path

from audit.api import views

urlpatterns = [
    path("decisions", views.DecisionsView.as_view(), name="decisions"),
    path("decisions/stats", views.DecisionStatsView.as_view(), name="decision-stats"),
    # Before decisions/<id>, which would take "export" for an id.
    path("decisions/export", views.DecisionExportView.as_view(), name="decisions-export"),
    path("decisions/<str:decision_id>", views.DecisionDetailView.as_view(), name="decision-detail"),
]
