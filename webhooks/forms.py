"""The webhook settings page's forms. They check types and lengths only; what depends on the
whole endpoint (the URL's scheme for the format, PagerDuty's routing key, the SSRF guard) is
the service's (webhooks.services), so the page and the API refuse the same things alike."""

from __future__ import annotations

from typing import Any

from django import forms

from webhooks import services
from webhooks.models import WebhookEndpoint, WebhookEvent

EVENT_HELP = {
    WebhookEvent.DENY: "a call was denied",
    WebhookEvent.REQUIRE_APPROVAL: "a call waits for an approval",
    WebhookEvent.BUDGET_EXCEEDED: "a rate limit or budget rule tripped",
    WebhookEvent.APPROVAL_RESOLVED: "an approval was approved or denied",
    WebhookEvent.APPROVAL_EXPIRED: "an approval expired",
    WebhookEvent.POLICY_PUBLISHED: "a rule set was published",
    WebhookEvent.WEBHOOK_FAILED: "another endpoint of the team was disabled after failing",
}


class EndpointForm(forms.Form):
    name = forms.CharField(max_length=services.NAME_MAX)
    # Not required: left out, the service's defaults (generic, info) apply, as in the API.
    format = forms.ChoiceField(
        choices=WebhookEndpoint.Format.choices, initial=WebhookEndpoint.Format.GENERIC, required=False
    )
    url = forms.CharField(
        label="URL",
        max_length=services.URL_MAX,
        required=False,
        help_text=(
            "https://… for every format; syslog+udp://host:514 or syslog+tcp://host:6514 for CEF. "
            "Left empty for PagerDuty: its Events API."
        ),
    )
    routing_key = forms.CharField(
        label="PagerDuty routing key",
        max_length=services.ROUTING_KEY_MAX,
        required=False,
        help_text="The integration key of a PagerDuty service (PagerDuty only).",
    )
    slack_channel = forms.CharField(
        label="Slack channel",
        max_length=services.SLACK_CHANNEL_MAX,
        required=False,
        help_text="Slack only: a channel id (C0123…) to post to with the bot token, instead of the URL.",
    )
    slack_bot_token = forms.CharField(
        label="Slack bot token",
        max_length=services.SLACK_TOKEN_MAX,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Slack only: xoxb-…; posts to the channel and replaces a message's buttons once decided.",
    )
    slack_signing_secret = forms.CharField(
        label="Slack signing secret",
        max_length=services.SLACK_SECRET_MAX,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Slack only: the app's signing secret, which checks the Approve / Deny presses.",
    )
    slack_forget = forms.BooleanField(label="Forget the Slack bot token and signing secret", required=False)
    events = forms.MultipleChoiceField(
        choices=[(value, f"{value}: {EVENT_HELP[WebhookEvent(value)]}") for value in WebhookEvent.values],
        widget=forms.CheckboxSelectMultiple,
        initial=[WebhookEvent.DENY, WebhookEvent.REQUIRE_APPROVAL],
    )
    min_severity = forms.ChoiceField(
        label="Lowest severity sent",
        choices=WebhookEndpoint.Severity.choices,
        initial=WebhookEndpoint.Severity.INFO,
        required=False,
    )
    enabled = forms.BooleanField(required=False, initial=True)

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> EndpointForm:
        # The credentials are never sent back to the browser (they are write-only).
        editable = [name for name in services.EDITABLE if name not in services.WRITE_ONLY]
        return cls(initial={name: getattr(endpoint, name) for name in editable})

    def values(self, *, keep_blank_credentials: bool) -> dict[str, Any]:
        """What to hand the service. Editing, a credential left blank keeps its value (the page
        never shows it); "Forget" clears both."""
        data = {name: value for name, value in self.cleaned_data.items() if name in services.EDITABLE}
        forget = self.cleaned_data.get("slack_forget")
        for name in services.WRITE_ONLY:
            if forget:
                data[name] = ""
            elif keep_blank_credentials and not data.get(name):
                data.pop(name, None)
        return data


class RotateForm(forms.Form):
    overlap_hours = forms.IntegerField(
        label="Old secret keeps signing for (hours)",
        min_value=0,
        max_value=int(services.ROTATION_OVERLAP_MAX.total_seconds() // 3600),
        initial=int(services.ROTATION_OVERLAP_DEFAULT.total_seconds() // 3600),
    )


class DeleteForm(forms.Form):
    confirm = forms.BooleanField(label="Yes, delete this endpoint and its delivery log")


class NoFields(forms.Form):
    pass
