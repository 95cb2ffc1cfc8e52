"""The approvals pages' input: the queue's filters and the approve / deny form."""

from __future__ import annotations

from typing import Any

from django import forms

from approvals.selectors import QueueFilters

# The longest approve/deny comment, on the pages and in the API (approvals.api.serializers.ResolveInput).
MAX_COMMENT_CHARS = 4000


class QueueFilterForm(forms.Form):
    """``?group=&tool=&team=``; every field optional. Django's CharField refuses NUL characters,
    which PostgreSQL could not compare against."""

    group = forms.CharField(required=False, max_length=100)
    tool = forms.CharField(required=False, max_length=200)
    team = forms.CharField(required=False, max_length=100)

    def filters(self) -> QueueFilters:
        data = self.cleaned_data if self.is_valid() else {}
        return QueueFilters(
            team_slug=data.get("team") or None,
            group=data.get("group") or None,
            tool_name=data.get("tool") or None,
        )


class DecisionForm(forms.Form):
    action = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    comment = forms.CharField(
        required=False,
        max_length=MAX_COMMENT_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Optional for approve; required to deny"}),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # The agent's developer reads this when the call is refused: a deny must say why.
        if data.get("action") == "deny" and not data.get("comment"):
            self.add_error("comment", "A comment is required to deny: say why the call is refused.")
        return data
