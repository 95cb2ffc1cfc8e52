"""Writes for a team's rule set: storing a new version after checking it, and publishing one
(or rolling back to one)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from audit.models import AuditEvent
from audit.trail import audit_event_append
from common.errors import Conflict, Unprocessable
from policies import source_worker
from policies.engine import RuleSetError, compile_rule_set, run_fixtures
from policies.engine.errors import RuleSetTooLarge
from policies.limits import RuleSetTooLargeError, rule_set_limits
from policies.models import RuleSetPublication, RuleSetVersion
from policies.permissions import ensure_may_publish_rule_set
from policies.services._common import invalid as _invalid
from tenancy.actor import Actor, ActorRecord
from tenancy.models import Team

logger = logging.getLogger(__name__)


def rule_set_version_create(
    *,
    team: Team,
    source_text: str,
    content_type: str = "application/yaml",
    author: Actor | ActorRecord | None = None,
) -> RuleSetVersion:
    """Store a new draft version after checking the whole document; refuses it with every
    problem at once (path, message, line), or with ``RuleSetTooLargeError`` (413/422) when it
    is over a published limit. ``author``: who wrote it (a draft's version: who proposed the
    draft); None records nobody."""
    document = rule_set_source_check(source_text=source_text, content_type=content_type)
    is_json = "json" in content_type
    with transaction.atomic():
        # Lock the team row so concurrent uploads get consecutive, distinct numbers.
        Team.objects.select_for_update().get(pk=team.pk)
        last = RuleSetVersion.objects.filter(team=team).aggregate(last=Max("number"))["last"] or 0
        version = RuleSetVersion.objects.create(
            team=team,
            number=last + 1,
            source_text=source_text,
            source_format=RuleSetVersion.SourceFormat.JSON if is_json else RuleSetVersion.SourceFormat.YAML,
            document=document,
            checksum=hashlib.sha256(source_text.encode("utf-8")).hexdigest(),
            author_user_id=author.user_id if author is not None else None,
            author_api_key_id=author.api_key_id if author is not None else None,
            author_name=author.name if author is not None else "",
        )
    logger.info("rule_set_version.created team=%s number=%d", team.slug, version.number)
    return version


def rule_set_source_check(*, source_text: str, content_type: str = "application/yaml") -> dict[str, Any]:
    """The normalized document of ``source_text``; every way it can fail to load (syntax,
    values YAML cannot build, size) is an ``ApplicationError`` naming the line."""
    try:
        return source_worker.load_source(source_text, content_type=content_type, limits=rule_set_limits())
    except RuleSetTooLarge as exc:
        raise RuleSetTooLargeError(exc) from exc
    except RuleSetError as exc:
        raise _invalid(exc, what="rule set", code="invalid_rule_set") from exc


class FixturesFailed(Unprocessable):
    code = "fixtures_failed"


def rule_set_version_publish(
    *,
    version: RuleSetVersion,
    actor: Actor | None = None,
) -> RuleSetPublication:
    """Make ``version`` the team's one active version, if its fixtures pass.

    Publishing a version that was active before is a rollback, logged as such (a draft's
    first publish is a publish, whatever its number); the version it replaces is archived.
    Every process learns of it after commit (compiled caches are dropped, long-polls answer).
    Who may is ``permissions.ensure_may_publish_rule_set``'s to say (a team admin or a key with
    ``policies:publish``; no key on a team that requires review; never whoever wrote the version,
    ``FourEyesRequired``); ``actor`` None is refused.
    """
    actor = ensure_may_publish_rule_set(actor=actor, version=version)
    results = run_fixtures(
        compile_rule_set(version.document), version.document.get("fixtures", []), now=timezone.now()
    )
    failed = [r.as_dict() for r in results if not r.passed]
    if failed:
        raise FixturesFailed(
            f"{len(failed)} of {len(results)} fixture test(s) failed; version {version.number} was not published",
            details={"results": [r.as_dict() for r in results]},
        )
    with transaction.atomic():
        # Lock the team: two publishes of the same team serialize, so exactly one wins each turn.
        Team.objects.select_for_update().get(pk=version.team_id)
        locked = RuleSetVersion.objects.get(pk=version.pk)
        previous = RuleSetVersion.objects.filter(team_id=locked.team_id, is_active=True).first()
        if previous is not None and previous.pk == locked.pk:
            raise Conflict(f"version {locked.number} is already active")
        # Deactivate first: the partial unique index allows one active row per team at a time.
        RuleSetVersion.objects.filter(team_id=locked.team_id, is_active=True).update(
            is_active=False, status=RuleSetVersion.Status.ARCHIVED
        )
        # Read before publishing sets it: was this version ever the active one?
        is_rollback = locked.was_active
        now = timezone.now()
        locked.is_active = True
        locked.status = RuleSetVersion.Status.PUBLISHED
        locked.published_at = now
        locked.save(update_fields=["is_active", "status", "published_at"])
        publication = RuleSetPublication.objects.create(
            team_id=locked.team_id,
            version=locked,
            previous_version=previous,
            kind=RuleSetPublication.Kind.ROLLBACK if is_rollback else RuleSetPublication.Kind.PUBLISH,
            actor_user=actor.user,
            actor_api_key_id=actor.api_key_id,
            actor_name=actor.name,
            created_at=now,
        )
        audit_event_append(
            team_id=locked.team_id,
            kind=AuditEvent.Kind.RULE_SET_PUBLISHED,
            actor_name=publication.actor_name or "unknown",
            details={
                "version": locked.number,
                "checksum": locked.checksum,
                "publication": publication.kind,
                "previous_version": previous.number if previous is not None else None,
            },
            remote_addr=actor.remote_addr,
            now=now,
        )
        # The trail entry announces it once committed (policy.published): every process drops
        # its cached rule set (policies.selectors.forget_cached_policies_of_event), ?wait= polls wake.
    logger.info("rule_set_version.%s team=%s number=%d", publication.kind, locked.team_id, locked.number)
    return publication
