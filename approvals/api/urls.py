from django.urls import path

from approvals.api import views

urlpatterns = [
    path("approvals", views.ApprovalListView.as_view(), name="approvals"),
    path("approvals/pending", views.ApprovalPendingListView.as_view(), name="approvals-pending"),
    path("approvals/batch-resolve", views.ApprovalBatchResolveView.as_view(), name="approvals-batch-resolve"),
    path("approvals/<str:approval_id>/resolve", views.ApprovalResolveView.as_view(), name="approval-resolve"),
    path("approvals/<str:approval_id>/trail", views.ApprovalTrailView.as_view(), name="approval-trail"),
    path("approvals/<str:approval_id>", views.ApprovalDetailView.as_view(), name="approval-detail"),
]
