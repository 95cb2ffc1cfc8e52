"""The audit pages; dashboards/urls.py mounts them in the dashboard's namespace (``dashboard:audit``)."""

from django.urls import path

from audit import views

urlpatterns = [
    path("teams/<slug:slug>/audit/", views.audit_page, name="audit"),
    path("teams/<slug:slug>/audit/verify", views.audit_verify, name="audit-verify"),
]
