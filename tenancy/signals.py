"""Keep personal keys as good as the person behind them, whichever way memberships and users
change (a service, the Django admin, the ORM).

A personal key authenticates only while its owner is active and a member of the key's team,
with at most the scopes of their current role (``tenancy.selectors._principal_from_database``).
That check runs when a principal is loaded; these receivers clear the principal cache so a
change counts at once in this process, and within the key-cache bound in the others, as a
revocation does. Leaving a team also revokes the person's keys for it, for good.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tenancy.models import Membership
from tenancy.selectors import forget_cached_principals
from tenancy.services import personal_api_keys_revoke_for_membership


@receiver(post_delete, sender=Membership, dispatch_uid="tenancy.membership_deleted")
def _membership_deleted(sender: type[Membership], instance: Membership, **kwargs: Any) -> None:
    personal_api_keys_revoke_for_membership(user_id=instance.user_id, team_id=instance.team_id)


@receiver(post_save, sender=Membership, dispatch_uid="tenancy.membership_saved")
def _membership_saved(sender: type[Membership], instance: Membership, **kwargs: Any) -> None:
    # A role change narrows (or widens) what the person's keys may do.
    transaction.on_commit(forget_cached_principals)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="tenancy.user_saved")
def _user_saved(
    sender: type[Any], instance: Any, update_fields: frozenset[str] | None = None, **kwargs: Any
) -> None:
    # Every sign-in saves last_login alone: that changes no right, and clearing the cache on
    # each one would send every key back to the database.
    if update_fields is not None and set(update_fields) <= {"last_login", "password"}:
        return
    transaction.on_commit(forget_cached_principals)
