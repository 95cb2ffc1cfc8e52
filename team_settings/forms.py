"""The settings page's forms: each names the person by username and the group by slug (what the
page's hidden fields send), so a form is the same whoever sends it and the service decides."""

from __future__ import annotations

from django import forms

from team_settings.services import GROUP_NAME_MAX, GROUP_SLUG_MAX
from tenancy.models import Membership

USERNAME_MAX = 150


class MemberAddForm(forms.Form):
    user = forms.CharField(label="Username or e-mail", max_length=254)
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class MemberForm(forms.Form):
    username = forms.CharField(max_length=USERNAME_MAX)


class MemberRoleForm(MemberForm):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class GroupCreateForm(forms.Form):
    name = forms.CharField(max_length=GROUP_NAME_MAX)
    slug = forms.CharField(
        label="Slug (rules name it)",
        max_length=GROUP_SLUG_MAX,
        required=False,
        help_text="Made from the name when left empty; it cannot be changed later.",
    )


class GroupForm(forms.Form):
    group = forms.SlugField(max_length=GROUP_SLUG_MAX)


class GroupRenameForm(GroupForm):
    name = forms.CharField(max_length=GROUP_NAME_MAX)


class GroupMemberForm(GroupForm):
    username = forms.CharField(max_length=USERNAME_MAX)


class OptionsForm(forms.Form):
    admins_may_approve = forms.BooleanField(
        required=False, label="Admins may decide approvals of groups they are not in"
    )
    require_policy_review = forms.BooleanField(
        required=False, label="Rule changes need a person's review (an API key alone cannot publish)"
    )
