"""Reads of the team settings page: who is in the team with which role, its approver groups and
their members, and its members' personal keys; and finding the person an admin names."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Prefetch, Q

from common.errors import InvalidInput
from tenancy.models import ApiKey, ApproverGroup, Membership, Team


class UserNotFound(InvalidInput):
    code = "user_not_found"


@dataclass(frozen=True, slots=True)
class TeamSettings:
    team: Team
    memberships: list[Membership]
    groups: list[ApproverGroup]
    # Each member's personal keys for this team (also revoked ones, marked so), by person.
    member_keys: list[ApiKey]

    @property
    def admin_count(self) -> int:
        return sum(1 for m in self.memberships if m.role == Membership.Role.ADMIN)

    @property
    def member_ids(self) -> set[int]:
        return {m.user_id for m in self.memberships}

    @property
    def group_rows(self) -> list[GroupRow]:
        """Each group with the team's members who are not in it yet (whom the page offers to add)."""
        rows = []
        for group in self.groups:
            inside = {user.pk for user in group.members.all()}
            rows.append(GroupRow(group, [m.user for m in self.memberships if m.user_id not in inside]))
        return rows


@dataclass(frozen=True, slots=True)
class GroupRow:
    group: ApproverGroup
    candidates: list[User]


def team_settings_of(*, team: Team, with_keys: bool) -> TeamSettings:
    """Everything the page shows, in four queries (memberships, groups, their members, keys);
    keys only when asked (the page shows them to admins)."""
    memberships = list(Membership.objects.filter(team=team).select_related("user").order_by("user__username"))
    people = get_user_model().objects.order_by("username")
    groups = list(
        ApproverGroup.objects.filter(team=team)
        .order_by("slug")
        .prefetch_related(Prefetch("members", queryset=people))
    )
    keys: list[ApiKey] = []
    if with_keys:
        keys = list(
            ApiKey.objects.filter(team=team, user__isnull=False)
            .select_related("user")
            .order_by("user__username", "revoked_at", "-created_at")
        )
    return TeamSettings(team=team, memberships=memberships, groups=groups, member_keys=keys)


def user_find(*, name: str) -> User:
    """The active person ``name`` names: their username, or their e-mail if no username matches
    (case-insensitive). An e-mail two people share names neither: say the username instead."""
    wanted = name.strip()
    if not wanted:
        raise UserNotFound("give a username or an e-mail address", details={"field": "user"})
    users = get_user_model().objects.filter(is_active=True)
    by_username = users.filter(username__iexact=wanted).first()
    if by_username is not None:
        return by_username
    by_email = list(users.filter(Q(email__iexact=wanted) & ~Q(email=""))[:2])
    if len(by_email) == 1:
        return by_email[0]
    if by_email:
        raise UserNotFound(
            f"more than one person has the e-mail {wanted!r}: give their username", details={"field": "user"}
        )
    raise UserNotFound(
        f"nobody named {wanted!r} (username or e-mail) can sign in here", details={"field": "user"}
    )


def user_by_username(*, username: str) -> User:
    """The person the page's hidden field names (active or not: a deactivated member can still
    be removed)."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise UserNotFound(f"nobody has the username {username!r}", details={"field": "username"})
    return user
