"""Reads for tenancy, including the API-key lookup on every request's path."""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import OuterRef, Q, QuerySet, Subquery

from common.cache import Missing, TtlCache
from common.database import run_in_db_thread
from common.errors import NotFound
from tenancy import keys
from tenancy.models import ApiKey, Membership, Organization, Team
from tenancy.principal import ApiKeyPrincipal

# token hash -> principal. Only hits are cached: caching misses would let random tokens
# grow the cache without bound (the loader's None for a miss is returned, not stored).
_principals: TtlCache[str, ApiKeyPrincipal | None] = TtlCache(lambda: settings.API_KEY_CACHE_SECONDS)
_team_timeouts: TtlCache[uuid.UUID, int | None] = TtlCache(30.0)


def forget_cached_principals() -> None:
    _principals.clear()


# What a plain member's personal key may carry: what the dashboard lets a member do (run the
# team's agents, read its decisions, decide approvals they are eligible for). Writing or
# publishing policies (a tool policy applies the moment it is written) and administering the
# organization are a team admin's. A scope not named here (a new one, say) is admin-only.
MEMBER_KEY_SCOPES: frozenset[str] = frozenset(
    {ApiKey.Scope.RUNTIME, ApiKey.Scope.DECISIONS_READ, ApiKey.Scope.APPROVALS_RESOLVE}
)


def personal_key_scopes_allowed(*, role: str | None, is_staff: bool) -> frozenset[str]:
    """The scopes a person's key may hold in a team where their membership role is ``role``
    (None: not a member, so none). Team admins and staff members hold every scope, as
    ``TeamAccess.is_admin`` has it for the dashboard."""
    if role is None:
        return frozenset()
    if is_staff or role == Membership.Role.ADMIN:
        return frozenset(ApiKey.Scope.values)
    return MEMBER_KEY_SCOPES


def _principal_from_database(token: str, token_hash: str) -> ApiKeyPrincipal | None:
    # One query, also for a personal key: its owner's current role in the key's team comes
    # along as a subquery (null when they are no longer a member).
    role = Membership.objects.filter(user_id=OuterRef("user_id"), team_id=OuterRef("team_id")).values("role")
    candidates = (
        ApiKey.objects.filter(prefix=keys.token_prefix(token), revoked_at__isnull=True)
        .select_related("team", "user")
        .annotate(owner_role=Subquery(role[:1]))
    )
    for api_key in candidates:
        if not hmac.compare_digest(api_key.key_hash, token_hash):
            continue
        scopes = frozenset(api_key.scopes)
        if api_key.user is not None:
            # A person's key is only as good as the person: gone from the team or deactivated,
            # it is invalid; otherwise it carries no more than their role allows today.
            if not api_key.user.is_active or api_key.owner_role is None:
                return None
            scopes &= personal_key_scopes_allowed(role=api_key.owner_role, is_staff=api_key.user.is_staff)
        return ApiKeyPrincipal(
            key_id=api_key.id,
            key_prefix=api_key.prefix,
            team_id=api_key.team_id,
            team_slug=api_key.team.slug,
            organization_id=api_key.team.organization_id,
            scopes=scopes,
            user_id=api_key.user_id,
            key_name=api_key.name,
        )
    return None


def principal_for_token(token: str) -> ApiKeyPrincipal | None:
    """The principal behind a presented token, or None when unknown or revoked."""
    if not token:
        return None
    token_hash = keys.hash_token(token)
    cached = _principals.get(token_hash)
    if not isinstance(cached, Missing):
        return cached
    # Dated from before the read: the entry then expires within the TTL of any revocation
    # that committed while the read ran.
    started = time.monotonic()
    principal = _principal_from_database(token, token_hash)
    if principal is not None:
        _principals.put(token_hash, principal, loaded_at=started)
    return principal


async def principal_for_token_async(token: str) -> ApiKeyPrincipal | None:
    """As ``principal_for_token``, for the gateway: the database only on a miss, off the event loop."""
    if not token:
        return None
    token_hash = keys.hash_token(token)
    return await _principals.get_or_load(
        token_hash, lambda: run_in_db_thread(_principal_from_database, token, token_hash), cache_none=False
    )


def token_is_known(token: str) -> bool:
    """Whether a key with this token exists at all, revoked or not. Asked only after a failed
    lookup: a known key (revoked, say) is no guess, so it does not count towards a lockout."""
    return ApiKey.objects.filter(key_hash=keys.hash_token(token)).exists()


def team_get_by_slug(*, slug: str) -> Team:
    try:
        return Team.objects.select_related("organization").get(slug=slug)
    except Team.DoesNotExist as exc:
        raise NotFound(f"team {slug!r} does not exist") from exc


def organizations_administered_by(*, principal: ApiKeyPrincipal) -> QuerySet[Organization]:
    """A key administers its own team's organization and the organizations it created."""
    return Organization.objects.filter(
        Q(pk=principal.organization_id) | Q(created_by_api_key_id=principal.key_id)
    ).distinct()


def teams_administered_by(*, principal: ApiKeyPrincipal) -> QuerySet[Team]:
    """A key reaches its own team and the teams (or organizations) it created; nothing else."""
    return Team.objects.filter(
        Q(pk=principal.team_id)
        | Q(created_by_api_key_id=principal.key_id)
        | Q(organization__created_by_api_key_id=principal.key_id)
    ).select_related("organization")


def api_keys_administered_by(*, principal: ApiKeyPrincipal) -> QuerySet[ApiKey]:
    return (
        ApiKey.objects.filter(team__in=teams_administered_by(principal=principal))
        .select_related("user")
        .order_by("-created_at")
    )


def _team_default_timeout_from_database(team_id: uuid.UUID) -> int | None:
    return Team.objects.filter(pk=team_id).values_list("default_approval_timeout_seconds", flat=True).first()


async def team_default_approval_timeout(*, team_id: uuid.UUID) -> int | None:
    """The team's default approval timeout in seconds (None: the installation default), cached briefly."""
    return await _team_timeouts.get_or_load(
        team_id, lambda: run_in_db_thread(_team_default_timeout_from_database, team_id)
    )


@dataclass(frozen=True, slots=True)
class TeamAccess:
    """What a signed-in person may do in one team, as the dashboard sees it."""

    team: Team
    role: str | None  # their membership role; None for staff who are not members
    is_staff: bool

    @property
    def is_admin(self) -> bool:
        return self.is_staff or self.role == Membership.Role.ADMIN


def teams_visible_to(*, user: User | AnonymousUser) -> QuerySet[Team]:
    """The teams a person sees in the dashboard: those they are a member of; every team for staff."""
    if not user.is_authenticated:
        return Team.objects.none()
    teams = Team.objects.all() if user.is_staff else Team.objects.filter(memberships__user=user)
    return teams.select_related("organization").order_by("slug")


def team_access_for(*, user: User, slug: str) -> TeamAccess:
    """The person's access to the team ``slug``. A team they may not see is NotFound, exactly
    like one that does not exist, so slugs cannot be probed."""
    team = teams_visible_to(user=user).filter(slug=slug).first()
    if team is None:
        raise NotFound(f"team {slug!r} does not exist")
    role = Membership.objects.filter(user=user, team=team).values_list("role", flat=True).first()
    return TeamAccess(team=team, role=role, is_staff=bool(user.is_staff))


def user_is_team_admin(*, user: User, team_id: uuid.UUID) -> bool:
    """Whether ``user`` administers team ``team_id``: its admin, or staff (``TeamAccess.is_admin``,
    read from the team's id for the services, which are handed no ``TeamAccess``)."""
    if user.is_staff:
        return True
    return Membership.objects.filter(user=user, team_id=team_id, role=Membership.Role.ADMIN).exists()


def personal_key_owner(*, principal: ApiKeyPrincipal) -> User | None:
    """The person a personal key acts for, read afresh (not from the principal cache): None
    when the key is a team's, revoked, or its owner is inactive or no longer in the key's team.
    For actions that must not ride on a cached principal (resolving an approval)."""
    if principal.user_id is None:
        return None
    return (
        get_user_model()
        .objects.filter(
            pk=principal.user_id,
            is_active=True,
            memberships__team_id=principal.team_id,
            personal_api_keys__pk=principal.key_id,
            personal_api_keys__revoked_at__isnull=True,
        )
        .first()
    )


def user_is_named(*, user: User, name: str) -> bool:
    """Whether ``name`` is ``user``'s username or e-mail (case-insensitive, surrounding space ignored)."""
    wanted = name.strip().casefold()
    email = (getattr(user, "email", "") or "").strip().casefold()
    return bool(wanted) and (wanted == user.get_username().casefold() or (bool(email) and wanted == email))


def memberships_of(*, user: User) -> QuerySet[Membership]:
    """The teams a person belongs to (a personal key is made for one of these), by team slug."""
    return Membership.objects.filter(user=user).select_related("team").order_by("team__slug")


def personal_api_keys_of(*, user: User) -> QuerySet[ApiKey]:
    """Everything the "My API keys" page lists: the person's own keys, newest first."""
    return ApiKey.objects.filter(user=user).select_related("team").order_by("team__slug", "-created_at")


def personal_api_key_get(*, user: User, key_id: uuid.UUID) -> ApiKey:
    """The person's own key; anyone else's (or none) is NotFound, so key ids cannot be probed."""
    api_key = ApiKey.objects.filter(pk=key_id, user=user).select_related("team").first()
    if api_key is None:
        raise NotFound("API key not found")
    return api_key
