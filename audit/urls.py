from django.urls import path

from audit import views

urlpatterns = [
    path("", views.dashboard_home, name="home"),
    path("teams/<slug:slug>/audit/", views.audit_page, name="audit"),
    path("teams/<slug:slug>/audit/verify", views.audit_verify, name="audit-verify"),
]
