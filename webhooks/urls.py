"""The webhook settings pages, mounted under /dashboard/teams/<slug>/settings/webhooks/
(veto_cloud/urls.py), namespace ``webhooks``."""

from django.urls import path

from webhooks import views

urlpatterns = [
    path("", views.page, name="page"),
    path("create", views.create, name="create"),
    path("<uuid:webhook_id>/", views.detail, name="detail"),
    path("<uuid:webhook_id>/deliveries", views.deliveries, name="deliveries"),
    path("<uuid:webhook_id>/update", views.update, name="update"),
    path("<uuid:webhook_id>/delete", views.delete, name="delete"),
    path("<uuid:webhook_id>/rotate-secret", views.rotate_secret, name="rotate-secret"),
    path("<uuid:webhook_id>/test", views.test_send, name="test"),
    path("<uuid:webhook_id>/deliveries/<uuid:delivery_id>/resend", views.resend, name="resend"),
]
