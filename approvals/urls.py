"""The approvals pages, mounted under /dashboard/approvals/ (see veto_cloud/urls.py)."""

from django.urls import path

from approvals import views

urlpatterns = [
    path("", views.approvals_queue, name="queue"),
    path("history/", views.approvals_history, name="history"),
    path("badge/", views.approvals_badge, name="badge"),
    path("<uuid:approval_id>/", views.approval_detail, name="detail"),
    path("<uuid:approval_id>/decide", views.approval_decide, name="decide"),
]
