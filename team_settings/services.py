"""Writes of the team settings page: members and roles, approver groups and who is in them, the
team's options and its members' personal keys.

Every change is one service, one transaction, one entry in the team's governance trail
(``audit.trail.audit_event_append``, kind ``team.changed``), so the entry commits exactly when
the change does and is announced once it has (common.events ``team.changed``, whose ``user_id``
lets the live path drop a removed member's sockets at once). The entry copies the actor's and
the person's or group's names: it survives their deletion.

Who may: a team admin of the team or staff (``tenancy.selectors.user_is_team_admin``, the
dashboard's ``TeamAccess.is_admin``), or a trusted process; an API key never (these are the
people's settings, and a key could otherwise make its own person an admin). Every refusal is an
``ApplicationError`` the page turns into a message.

Race-safety: each service locks the team's row first (``select_for_update``), so a team's
settings change one at a time and "is this the last admin?" is answered under the lock;
uniqueness (one membership per person, one group per slug) is the database's constraints.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from audit.models import AuditEvent
from audit.trail import audit_event_append
from common.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from tenancy.actor import Actor
from tenancy.models import ApiKey, ApproverGroup, Membership, Team
from tenancy.selectors import user_is_team_admin
from tenancy.services import api_key_revoke

logger = logging.getLogger(__name__)

GROUP_SLUG_MAX = ApproverGroup._meta.get_field("slug").max_length or 100
GROUP_NAME_MAX = ApproverGroup._meta.get_field("name").max_length or 200


class TeamAdminRequired(PermissionDenied):
    code = "team_admin_required"


class LastAdmin(Conflict):
    """A team keeps at least one admin: nobody could change its settings otherwise (but staff)."""

    code = "last_admin"


class NotAMember(Conflict):
    """The person is not (or no longer: someone else was quicker) a member of the team."""

    code = "not_a_member"


def ensure_team_admin(*, team: Team, actor: Actor) -> None:
    """Refuse anyone but the team's admins, staff and trusted processes (every service asks
    first; the page asks too before it says what is wrong with a form)."""
    if actor.process_name:
        return
    if actor.user is None:
        raise TeamAdminRequired(
            "team settings are changed by a team admin on the dashboard, not with an API key"
        )
    if not user_is_team_admin(user=actor.user, team_id=team.id):
        raise TeamAdminRequired(f"only an admin of {team.slug} may change its settings")


def _locked_team(team: Team, actor: Actor) -> Team:
    """The team's row, locked for the rest of the transaction: one settings change at a time.
    Who may is asked again under the lock: an admin demoted a moment ago changes nothing more."""
    locked = Team.objects.select_for_update().get(pk=team.pk)
    ensure_team_admin(team=locked, actor=actor)
    return locked


def _trail(*, team: Team, actor: Actor, change: str, user: User | None = None, **details: Any) -> AuditEvent:
    """Inside the change's transaction: its entry in the team's governance trail."""
    record: dict[str, Any] = {
        "change": change,
        "user_id": user.pk if user is not None else None,
        "username": user.get_username() if user is not None else None,
        **details,
    }
    event = audit_event_append(
        team_id=team.id,
        kind=AuditEvent.Kind.TEAM_CHANGED,
        actor_name=actor.name or "unknown",
        details=record,
        remote_addr=actor.remote_addr,
    )
    logger.info(
        "team.changed team=%s change=%s user=%s by=%s", team.slug, change, record["user_id"], actor.name
    )
    return event


def _valid_role(role: str) -> str:
    if role not in Membership.Role.values:
        raise InvalidInput(
            f"role: {role!r} is not a role; one of {', '.join(Membership.Role.values)}",
            details={"field": "role", "allowed": list(Membership.Role.values)},
        )
    return role


def _membership_locked(*, team: Team, user: User) -> Membership:
    membership = Membership.objects.select_for_update().filter(team=team, user=user).first()
    if membership is None:
        raise NotAMember(f"{user.get_username()} is not a member of {team.slug}")
    return membership


def _ensure_not_last_admin(*, team: Team, membership: Membership, doing: str) -> None:
    """Under the team's lock: refuse taking away the team's only admin."""
    if membership.role != Membership.Role.ADMIN:
        return
    admins = Membership.objects.filter(team=team, role=Membership.Role.ADMIN).count()
    if admins <= 1:
        raise LastAdmin(
            f"{membership.user.get_username()} is the last admin of {team.slug}: make someone else "
            f"an admin before you {doing} them"
        )


# --- members ---------------------------------------------------------------------------------------


def membership_add(*, team: Team, user: User, role: str, actor: Actor) -> Membership:
    """Make an existing, active person a member of the team in ``role`` (admin or member: the
    role model's top is a team admin; staff and superusers are made elsewhere, never here)."""
    ensure_team_admin(team=team, actor=actor)
    role = _valid_role(role)
    if not user.is_active:
        raise InvalidInput(f"{user.get_username()} is deactivated and cannot join a team")
    try:
        with transaction.atomic():
            locked = _locked_team(team, actor)
            membership = Membership.objects.create(team=locked, user=user, role=role)
            _trail(team=locked, actor=actor, change="member_added", user=user, role=role)
    except IntegrityError as exc:
        raise Conflict(
            f"{user.get_username()} is already a member of {team.slug}", code="already_a_member"
        ) from exc
    return membership


def membership_role_change(*, team: Team, user: User, role: str, actor: Actor) -> Membership:
    """Change a member's role. The last admin cannot be made a member. No change, no entry.
    Their personal keys follow the new role the next time they are used (tenancy.selectors)."""
    ensure_team_admin(team=team, actor=actor)
    role = _valid_role(role)
    with transaction.atomic():
        locked = _locked_team(team, actor)
        membership = _membership_locked(team=locked, user=user)
        previous = membership.role
        if previous == role:
            return membership
        if role != Membership.Role.ADMIN:
            _ensure_not_last_admin(team=locked, membership=membership, doing="demote")
        membership.role = role
        membership.save(update_fields=["role"])
        _trail(team=locked, actor=actor, change="role_changed", user=user, role=role, previous_role=previous)
    return membership


def membership_remove(*, team: Team, user: User, actor: Actor) -> None:
    """Take a person out of the team: out of its approver groups too (a group decides only the
    team's approvals), and their personal keys for it are revoked (tenancy.signals, on the
    membership's deletion). The trail entry's ``team.changed`` names them (``user_id``), so the
    live path drops their open sockets from the team at once. The last admin cannot be removed."""
    ensure_team_admin(team=team, actor=actor)
    with transaction.atomic():
        locked = _locked_team(team, actor)
        membership = _membership_locked(team=locked, user=user)
        _ensure_not_last_admin(team=locked, membership=membership, doing="remove")
        groups = sorted(
            ApproverGroup.objects.filter(team=locked, members=user).values_list("slug", flat=True)
        )
        ApproverGroup.members.through.objects.filter(approvergroup__team=locked, user=user).delete()
        keys = ApiKey.objects.filter(team=locked, user=user, revoked_at__isnull=True).count()
        membership.delete()
        _trail(
            team=locked,
            actor=actor,
            change="member_removed",
            user=user,
            role=membership.role,
            groups=groups,
            keys_revoked=keys,
        )


# --- approver groups -------------------------------------------------------------------------------


def _valid_group_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidInput("name: must not be blank", details={"field": "name"})
    if len(name) > GROUP_NAME_MAX:
        raise InvalidInput(f"name: at most {GROUP_NAME_MAX} characters", details={"field": "name"})
    return name


def _group_locked(*, team: Team, slug: str) -> ApproverGroup:
    group = ApproverGroup.objects.select_for_update().filter(team=team, slug=slug).first()
    if group is None:
        raise NotFound(f"{team.slug} has no approver group {slug!r}", code="no_such_group")
    return group


def approver_group_create(*, team: Team, slug: str, name: str, actor: Actor) -> ApproverGroup:
    """A new approver group; rules name it by ``slug`` (``approvers: [slug]``), which is why the
    slug is fixed once made and only the name can be changed."""
    ensure_team_admin(team=team, actor=actor)
    name = _valid_group_name(name)
    chosen = slugify(slug or name)
    if not chosen:
        raise InvalidInput("slug: must contain at least one letter or digit", details={"field": "slug"})
    if len(chosen) > GROUP_SLUG_MAX:
        raise InvalidInput(f"slug: at most {GROUP_SLUG_MAX} characters", details={"field": "slug"})
    try:
        with transaction.atomic():
            locked = _locked_team(team, actor)
            group = ApproverGroup.objects.create(team=locked, slug=chosen, name=name)
            _trail(team=locked, actor=actor, change="group_created", group=chosen, group_name=name)
    except IntegrityError as exc:
        raise Conflict(f"{team.slug} already has an approver group {chosen!r}", code="group_exists") from exc
    return group


def approver_group_rename(*, team: Team, slug: str, name: str, actor: Actor) -> ApproverGroup:
    """Change a group's display name (its slug, which rules name, stays). No change, no entry."""
    ensure_team_admin(team=team, actor=actor)
    name = _valid_group_name(name)
    with transaction.atomic():
        locked = _locked_team(team, actor)
        group = _group_locked(team=locked, slug=slug)
        if group.name == name:
            return group
        previous = group.name
        group.name = name
        group.save(update_fields=["name"])
        _trail(
            team=locked,
            actor=actor,
            change="group_renamed",
            group=group.slug,
            group_name=name,
            previous_name=previous,
        )
    return group


def approver_group_delete(*, team: Team, slug: str, actor: Actor) -> None:
    """Delete a group. Rules that still name it then find nobody in it: their approvals are
    decided by the team's admins only where the team lets them (``admins_may_approve``). The
    entry keeps who was in it."""
    ensure_team_admin(team=team, actor=actor)
    with transaction.atomic():
        locked = _locked_team(team, actor)
        group = _group_locked(team=locked, slug=slug)
        members = sorted(group.members.values_list("username", flat=True))
        group_name = group.name
        group.delete()
        _trail(
            team=locked,
            actor=actor,
            change="group_deleted",
            group=slug,
            group_name=group_name,
            members=members,
        )


def approver_group_member_add(*, team: Team, slug: str, user: User, actor: Actor) -> ApproverGroup:
    """Put a member of the team into one of its approver groups (only members: someone outside
    the team would decide approvals for it). Already in it: no change, no entry."""
    ensure_team_admin(team=team, actor=actor)
    with transaction.atomic():
        locked = _locked_team(team, actor)
        group = _group_locked(team=locked, slug=slug)
        if not Membership.objects.filter(team=locked, user=user).exists():
            raise NotAMember(
                f"{user.get_username()} is not a member of {team.slug}: add them to the team first"
            )
        if group.members.filter(pk=user.pk).exists():
            return group
        group.members.add(user)
        _trail(team=locked, actor=actor, change="group_member_added", user=user, group=group.slug)
    return group


def approver_group_member_remove(*, team: Team, slug: str, user: User, actor: Actor) -> ApproverGroup:
    """Take a person out of an approver group (also one who is no member of the team any more:
    groups made in the Django admin may hold such people). Not in it: no change, no entry."""
    ensure_team_admin(team=team, actor=actor)
    with transaction.atomic():
        locked = _locked_team(team, actor)
        group = _group_locked(team=locked, slug=slug)
        if not group.members.filter(pk=user.pk).exists():
            return group
        group.members.remove(user)
        _trail(team=locked, actor=actor, change="group_member_removed", user=user, group=group.slug)
    return group


# --- options and keys ------------------------------------------------------------------------------

TEAM_OPTIONS = ("admins_may_approve", "require_policy_review")


def team_options_update(
    *, team: Team, admins_may_approve: bool, require_policy_review: bool, actor: Actor
) -> Team:
    """Set the team's options: whether its admins may decide approvals of groups they are not in
    (``admins_may_approve``) and whether an API key alone may change its rules
    (``require_policy_review``). One entry naming each option that changed; none, no entry."""
    ensure_team_admin(team=team, actor=actor)
    wanted = {"admins_may_approve": admins_may_approve, "require_policy_review": require_policy_review}
    with transaction.atomic():
        locked = _locked_team(team, actor)
        changed = {
            name: {"from": getattr(locked, name), "to": value}
            for name, value in wanted.items()
            if getattr(locked, name) != value
        }
        if changed:
            for name in changed:
                setattr(locked, name, wanted[name])
            locked.save(update_fields=[*changed, "updated_at"])
            _trail(team=locked, actor=actor, change="options_changed", options=changed)
    for name in TEAM_OPTIONS:
        setattr(team, name, getattr(locked, name))
    return locked


def member_api_key_revoke(*, team: Team, key_id: uuid.UUID, actor: Actor) -> tuple[ApiKey, bool]:
    """Revoke a person's key for this team (a team admin cleaning up after someone, or a key
    that leaked); returns the key and whether this call revoked it (False: it already was, and
    there is no entry). Team keys (the agents') are not this page's."""
    ensure_team_admin(team=team, actor=actor)
    with transaction.atomic():
        locked = _locked_team(team, actor)
        api_key = (
            # ``of``: the key's row alone (PostgreSQL locks no nullable side of the user join).
            ApiKey.objects.select_for_update(of=("self",))
            .filter(pk=key_id, team=locked, user__isnull=False)
            .select_related("user")
            .first()
        )
        if api_key is None:
            raise NotFound("no such personal key in this team", code="no_such_key")
        if api_key.revoked_at is not None:
            return api_key, False
        api_key_revoke(api_key=api_key)
        _trail(
            team=locked,
            actor=actor,
            change="key_revoked",
            user=api_key.user,
            key_id=str(api_key.id),
            key_name=api_key.name,
            key_prefix=api_key.prefix,
        )
    return api_key, True
