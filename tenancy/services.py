"""Writes for tenancy: organizations, teams (projects), memberships, approver groups, API keys."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from common.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from tenancy import keys
from tenancy.models import ApiKey, ApproverGroup, Membership, Organization, Team
from tenancy.principal import ApiKeyPrincipal
from tenancy.selectors import forget_cached_principals, personal_key_scopes_allowed

logger = logging.getLogger(__name__)

ALL_SCOPES: tuple[str, ...] = tuple(ApiKey.Scope.values)
DEFAULT_SCOPES: tuple[str, ...] = (ApiKey.Scope.RUNTIME, ApiKey.Scope.DECISIONS_READ)
# A personal key is mostly for deciding approvals as oneself (VetoAdmin.resolve_approval).
PERSONAL_DEFAULT_SCOPES: tuple[str, ...] = (ApiKey.Scope.DECISIONS_READ, ApiKey.Scope.APPROVALS_RESOLVE)


def _unique_slug(model: type[Organization] | type[Team], base: str) -> str:
    root = slugify(base)[:90] or "item"
    candidate = root
    suffix = 2
    while model.objects.filter(slug=candidate).exists():
        candidate = f"{root}-{suffix}"
        suffix += 1
    return candidate


def _validated_scopes(scopes: Iterable[str] | None) -> list[str]:
    chosen = list(DEFAULT_SCOPES if scopes is None else scopes)
    unknown = sorted(set(chosen) - set(ALL_SCOPES))
    if unknown:
        raise InvalidInput(
            f"unknown scope(s): {', '.join(unknown)}",
            details={"allowed": list(ALL_SCOPES)},
        )
    return sorted(set(chosen))


def organization_create(
    *, name: str, slug: str | None = None, created_by_api_key_id: uuid.UUID | None = None
) -> Organization:
    """Create an organization; a clashing explicit slug is a 409."""
    name = name.strip()
    if not name:
        raise InvalidInput("name: must not be blank")
    chosen_slug = slugify(slug) if slug else _unique_slug(Organization, name)
    if not chosen_slug:
        raise InvalidInput("slug: must contain at least one letter or digit")
    try:
        with transaction.atomic():
            organization = Organization.objects.create(
                name=name, slug=chosen_slug, created_by_api_key_id=created_by_api_key_id
            )
    except IntegrityError as exc:
        raise Conflict(f"slug: an organization with slug {chosen_slug!r} already exists") from exc
    logger.info("organization.created id=%s slug=%s", organization.id, organization.slug)
    return organization


def team_create(
    *,
    organization: Organization,
    name: str,
    slug: str | None = None,
    created_by_api_key_id: uuid.UUID | None = None,
) -> Team:
    """Create a team (an SDK *project*). The organization's first team becomes its default."""
    name = name.strip()
    if not name:
        raise InvalidInput("name: must not be blank")
    chosen_slug = slugify(slug) if slug else _unique_slug(Team, name)
    try:
        with transaction.atomic():
            # Row lock on the organization serialises "is this the first team?" decisions.
            Organization.objects.select_for_update().get(pk=organization.pk)
            is_first = not organization.teams.exists()
            team = Team.objects.create(
                organization=organization,
                name=name,
                slug=chosen_slug,
                is_default=is_first,
                created_by_api_key_id=created_by_api_key_id,
            )
    except IntegrityError as exc:
        raise Conflict(f"slug: a team with slug {chosen_slug!r} already exists") from exc
    logger.info("team.created id=%s slug=%s organization=%s", team.id, team.slug, organization.id)
    return team


def api_key_create(
    *,
    team: Team,
    name: str,
    scopes: Iterable[str] | None = None,
    created_by: User | None = None,
    token: str | None = None,
    user: User | None = None,
    minted_by_key_id: uuid.UUID | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its token; the token is shown this once and never stored.

    ``token`` lets operators bring their own (e.g. ``VETO_DEMO_API_KEY``); it must be at
    least 32 characters. ``user`` makes it that person's key: use ``personal_api_key_create``,
    which checks their rights first.

    ``minted_by_key_id``: the key that asked for this one (``api_key_create_by_principal``,
    ``project_create``). The new key records it (``created_by_api_key``), its lineage
    (``lineage_root``) and its person as ``created_by`` (the minting key's ``user``, else its
    own ``created_by``), so four-eyes sees the two as one actor. A key is made either by a
    person or operator (``created_by``) or by a key, not both. A minting key that no longer
    exists is refused (403): nothing is created that four-eyes could not trace.
    """
    if minted_by_key_id is not None and created_by is not None:
        raise ValueError("api_key_create: created_by or minted_by_key_id, not both")
    name = name.strip()
    if not name:
        raise InvalidInput("name: must not be blank")
    if token is None:
        token = keys.generate_token()
    elif len(token) < keys.MIN_TOKEN_LENGTH:
        raise InvalidInput(f"key: must be at least {keys.MIN_TOKEN_LENGTH} characters")
    chosen_scopes = _validated_scopes(scopes)
    person_id = created_by.pk if created_by is not None and created_by.pk else None
    lineage_root: uuid.UUID | None = None
    try:
        with transaction.atomic():
            if minted_by_key_id is not None:
                origin = (
                    ApiKey.objects.filter(pk=minted_by_key_id)
                    .values_list("user_id", "created_by_id", "lineage_root")
                    .first()
                )
                if origin is None:
                    raise PermissionDenied(
                        "this API key no longer exists, so it cannot create keys", code="api_key_gone"
                    )
                origin_user_id, origin_created_by_id, origin_root = origin
                person_id = origin_user_id if origin_user_id is not None else origin_created_by_id
                lineage_root = origin_root if origin_root is not None else minted_by_key_id
            api_key = ApiKey.objects.create(
                team=team,
                name=name,
                prefix=keys.token_prefix(token),
                key_hash=keys.hash_token(token),
                scopes=chosen_scopes,
                created_by_id=person_id,
                user=user,
                created_by_api_key_id=minted_by_key_id,
                lineage_root=lineage_root,
            )
    except IntegrityError as exc:
        raise Conflict("key: this key is already registered") from exc
    logger.info(
        "api_key.created id=%s team=%s prefix=%s user=%s created_by=%s minted_by=%s",
        api_key.id,
        team.slug,
        api_key.prefix,
        user.pk if user is not None else None,
        person_id,
        minted_by_key_id,
    )
    return api_key, token


class ScopeNotAllowed(PermissionDenied):
    code = "scope_not_allowed"


def personal_api_key_create(
    *,
    user: User,
    team: Team,
    name: str,
    scopes: Iterable[str] | None = None,
    token: str | None = None,
) -> tuple[ApiKey, str]:
    """A key that acts as ``user`` in ``team``, holding at most their rights there.

    They must be an active member of the team (NotFound otherwise, as the dashboard hides
    teams one is not in), and every scope must be one their role allows
    (``personal_key_scopes_allowed``; 403 ``scope_not_allowed`` naming the others). The same
    limit is applied again each time the key is used, against their role then.
    """
    role = Membership.objects.filter(user=user, team=team).values_list("role", flat=True).first()
    if not user.is_active:
        raise NotFound(f"user {user.get_username()!r} is inactive")
    if role is None:
        raise NotFound(f"team {team.slug!r}: {user.get_username()} is not a member of it")
    allowed = personal_key_scopes_allowed(role=role, is_staff=user.is_staff)
    wanted = _validated_scopes(PERSONAL_DEFAULT_SCOPES if scopes is None else scopes)
    refused = sorted(set(wanted) - allowed)
    if refused:
        raise ScopeNotAllowed(
            f"scopes: {user.get_username()} ({role} of {team.slug}) may not hold {', '.join(refused)}",
            details={"field": "scopes", "refused": refused, "allowed": sorted(allowed)},
        )
    return api_key_create(team=team, name=name, scopes=wanted, created_by=user, token=token, user=user)


def api_key_create_by_principal(
    *, principal: ApiKeyPrincipal, team: Team, name: str, scopes: Iterable[str] | None
) -> tuple[ApiKey, str]:
    """A key minting a key: it may not grant a scope it lacks itself, and the new key is of its
    lineage (``api_key_create``'s ``minted_by_key_id``): one actor for four-eyes."""
    wanted = _validated_scopes(scopes)
    missing = sorted(set(wanted) - principal.scopes)
    if missing:
        raise PermissionDenied(
            f"scopes: this key cannot grant scope(s) it does not hold: {', '.join(missing)}"
        )
    return api_key_create(team=team, name=name, scopes=wanted, minted_by_key_id=principal.key_id)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key; idempotent. Takes effect at once here and within API_KEY_CACHE_SECONDS elsewhere."""
    updated = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db()
    forget_cached_principals()
    if updated:
        logger.info("api_key.revoked id=%s team=%s", api_key.id, api_key.team_id)
    return api_key


_last_touch: dict[uuid.UUID, float] = {}


def api_key_touch_due(*, key_id: uuid.UUID) -> bool:
    """True at most once per resolution window per key and process: the caller then writes
    ``last_used_at`` with ``api_key_touch`` (a write on every call would double the load)."""
    resolution = settings.API_KEY_LAST_USED_RESOLUTION_SECONDS
    now = time.monotonic()
    previous = _last_touch.get(key_id)
    if previous is not None and now - previous < resolution:
        return False
    _last_touch[key_id] = now
    return True


def api_key_touch(*, key_id: uuid.UUID) -> None:
    ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())


def project_create(
    *, organization: Organization, name: str, created_by_api_key_id: uuid.UUID | None
) -> tuple[Team, ApiKey, str]:
    """A team plus its first API key (all scopes), as the SDK's ``create_project`` expects. The
    calling key (``created_by_api_key_id``) minted that key: it is of its lineage (four-eyes)."""
    with transaction.atomic():
        team = team_create(organization=organization, name=name, created_by_api_key_id=created_by_api_key_id)
        api_key, token = api_key_create(
            team=team,
            name=f"{team.name} default key",
            scopes=ALL_SCOPES,
            minted_by_key_id=created_by_api_key_id,
        )
    return team, api_key, token


def membership_ensure(*, user: User, team: Team, role: str = Membership.Role.MEMBER) -> Membership:
    membership, _ = Membership.objects.update_or_create(user=user, team=team, defaults={"role": role})
    return membership


def membership_remove(*, membership: Membership) -> None:
    """Take a person out of a team; their personal keys for it are revoked with it (the
    ``post_delete`` receiver in ``tenancy.signals``, so removals in the Django admin do the same)."""
    with transaction.atomic():
        membership.delete()
    logger.info("membership.removed user=%s team=%s", membership.user_id, membership.team_id)


def personal_api_keys_revoke_for_membership(*, user_id: int, team_id: uuid.UUID) -> int:
    """Revoke a person's keys for a team they left; returns how many. The principal cache is
    cleared once the transaction commits (a key is invalid without the membership anyway)."""
    revoked = ApiKey.objects.filter(user_id=user_id, team_id=team_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    transaction.on_commit(forget_cached_principals)
    if revoked:
        logger.info("api_key.revoked_with_membership user=%s team=%s count=%d", user_id, team_id, revoked)
    return revoked


def approver_group_ensure(*, team: Team, slug: str, name: str | None = None) -> ApproverGroup:
    group, _ = ApproverGroup.objects.get_or_create(team=team, slug=slug, defaults={"name": name or slug})
    return group
