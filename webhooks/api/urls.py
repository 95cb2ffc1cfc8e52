from django.urls import path

from webhooks.api import views

urlpatterns = [
    path("webhooks", views.WebhooksView.as_view(), name="webhooks"),
    path("webhooks/<str:webhook_id>", views.WebhookView.as_view(), name="webhook"),
    path(
        "webhooks/<str:webhook_id>/rotate-secret",
        views.WebhookRotateSecretView.as_view(),
        name="webhook-rotate-secret",
    ),
    path(
        "webhooks/<str:webhook_id>/deliveries",
        views.WebhookDeliveriesView.as_view(),
        name="webhook-deliveries",
    ),
    path("webhooks/<str:webhook_id>/test", views.WebhookTestView.as_view(), name="webhook-test"),
    path(
        "webhooks/<str:webhook_id>/deliveries/<str:delivery_id>/resend",
        views.WebhookResendView.as_view(),
        name="webhook-delivery-resend",
    ),
]
