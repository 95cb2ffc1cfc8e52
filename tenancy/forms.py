"""The "My API keys" page's input: a new personal key (name, team, scopes)."""

from __future__ import annotations

from django import forms

from tenancy.models import ApiKey, Membership
from tenancy.services import PERSONAL_DEFAULT_SCOPES


class PersonalApiKeyForm(forms.Form):
    """Which scopes the person may hold in the chosen team is the service's to decide (and to
    refuse, naming them); the form only checks the shape. Django's CharField refuses NUL."""

    name = forms.CharField(max_length=200)
    team = forms.ChoiceField()
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=list(PERSONAL_DEFAULT_SCOPES),
    )

    def __init__(self, *args: object, memberships: list[Membership], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        team_field = self.fields["team"]
        assert isinstance(team_field, forms.ChoiceField)
        team_field.choices = [(m.team.slug, f"{m.team.name} ({m.team.slug})") for m in memberships]
        if len(memberships) == 1:
            team_field.initial = memberships[0].team.slug
