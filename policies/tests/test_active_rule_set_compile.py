"""A newly active version whose compile takes longer than the request's database deadline is
compiled and served, once, and the database breaker stays closed: compiling is CPU, not the
database (found by benchmarks/validate_by_rule_count.py: a 10,000-rule set was never served and
opened the breaker for every team on the process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.test import override_settings

from common import database
from common.database import breaker
from policies import selectors
from policies.engine import ToolCall
from tests.factories import TeamFactory, publish_rules

RULES = """\
rules:
  - id: block_big_refunds
    tools: [issue_refund]
    when: args.amount > 500
    action: deny
"""


@pytest.fixture(autouse=True)
def closed_breaker_and_empty_cache() -> Iterator[None]:
    breaker._open_until = 0.0
    selectors.forget_cached_rule_sets()
    yield
    breaker._open_until = 0.0
    breaker._probing = False
    selectors.forget_cached_rule_sets()


@pytest.mark.django_db(transaction=True)
@override_settings(DATABASE_REQUEST_TIMEOUT=0.2)
def test_active_rule_set__compile_slower_than_the_database_deadline__served_once__breaker_closed(monkeypatch):
    team = TeamFactory()
    version = publish_rules(team, RULES)
    monkeypatch.setattr(database, "_request_deadline_applies", lambda: True)  # as on PostgreSQL
    compiles: list[float] = []
    real_compile = selectors.compile_rule_set

    def slow_compile(document):
        compiles.append(time.monotonic())
        time.sleep(0.5)  # a big set: well past the 0.2 s deadline
        return real_compile(document)

    monkeypatch.setattr(selectors, "compile_rule_set", slow_compile)

    async def two_requests_at_once():
        return await asyncio.gather(
            selectors.active_rule_set(team_id=team.id), selectors.active_rule_set(team_id=team.id)
        )

    # When two requests need the new version at once
    first, second = asyncio.run(two_requests_at_once())

    # Then both get it, compiled once, and no outage was declared
    assert first.version_number == second.version_number == version.number
    decision = first.rules.evaluate(ToolCall("issue_refund", {"amount": 900}, {}, datetime.now(UTC)))
    assert (decision.decision, decision.rule_id) == ("deny", "block_big_refunds")
    assert len(compiles) == 1
    assert not breaker.is_open()
