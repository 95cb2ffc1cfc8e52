"""The people of the policies pages' tests: a team, a member (alice) and a team admin (dana)."""

from __future__ import annotations

import pytest

from tenancy.models import Membership
from tests.factories import TeamFactory, UserFactory


@pytest.fixture
def team():
    return TeamFactory(slug="payments", name="Payments")


def member_of(team, role: str = Membership.Role.MEMBER, **user_fields):
    user = UserFactory(**user_fields)
    Membership.objects.create(user=user, team=team, role=role)
    return user


@pytest.fixture
def alice(team):
    return member_of(team, username="alice")


@pytest.fixture
def dana(team):
    return member_of(team, Membership.Role.ADMIN, username="dana")
