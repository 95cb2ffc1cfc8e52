from django.urls import path

from approvals.api import views

urlpatterns = [
    path("approvals/<str:approval_id>", views.ApprovalDetailView.as_view(), name="approval-detail"),
]
