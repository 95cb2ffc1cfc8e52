"""Reads for policies, including the compiled active rule set on validate's hot path."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from django.db.models import QuerySet

from common.cache import TtlCache
from common.gateway import run_db
from policies.engine import EMPTY_RULE_SET, CompiledRuleSet, compile_rule_set
from policies.models import RegisteredTool, RuleSetVersion

# How long a process trusts its compiled copy before re-checking which version is active.
# Re-checking is one indexed query; compiling happens only when the version changed.
ACTIVE_VERSION_RECHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ActiveRuleSet:
    version_id: uuid.UUID | None
    version_number: int | None
    rules: CompiledRuleSet


_NO_RULES = ActiveRuleSet(None, None, EMPTY_RULE_SET)
_active: TtlCache[uuid.UUID, ActiveRuleSet] = TtlCache(ACTIVE_VERSION_RECHECK_SECONDS)
_compile_lock = threading.Lock()


def forget_cached_rule_sets(*, team_id: uuid.UUID | None = None) -> None:
    if team_id is None:
        _active.clear()
    else:
        _active.forget(team_id)


def _active_rule_set_from_database(team_id: uuid.UUID) -> ActiveRuleSet:
    row = RuleSetVersion.objects.filter(team_id=team_id, is_active=True).values_list("id", "number").first()
    if row is None:
        return _NO_RULES
    stale = _active.get_stale(team_id)
    if isinstance(stale, ActiveRuleSet) and stale.version_id == row[0]:
        return stale  # still active: keep the compiled copy
    with _compile_lock:
        document = RuleSetVersion.objects.values_list("document", flat=True).get(pk=row[0])
        return ActiveRuleSet(row[0], row[1], compile_rule_set(document))


async def active_rule_set(*, team_id: uuid.UUID) -> ActiveRuleSet:
    """The team's active version, compiled once per version per process and re-checked every
    ACTIVE_VERSION_RECHECK_SECONDS (one indexed query, off the event loop)."""
    return await _active.get_or_load(team_id, lambda: run_db(_active_rule_set_from_database, team_id))


def registered_tools_of_team(*, team_id: uuid.UUID) -> QuerySet[RegisteredTool]:
    return RegisteredTool.objects.filter(team_id=team_id).order_by("name")
