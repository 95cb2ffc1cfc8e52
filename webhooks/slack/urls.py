from django.urls import path

from webhooks.slack import views

urlpatterns = [
    path("slack/interactivity/<uuid:endpoint_id>", views.slack_interactivity, name="slack-interactivity"),
]
