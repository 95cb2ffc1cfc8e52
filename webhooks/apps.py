from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Notifications to the tools security teams already watch (Slack, PagerDuty, a SIEM, any
    HTTP receiver): each team's endpoints, what is due to each, and its delivery with retries.

    What to deliver is read from the team's ordered, durable event source (the audit chains,
    ``audit.selectors.team_events_after``) with a cursor per endpoint, so nothing committed is
    lost and nothing is written on the request's hot path; the event path (common.events) only
    says when to look."""

    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from webhooks import sink

        sink.register()
