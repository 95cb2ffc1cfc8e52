"""Redis frozen (SIGSTOP: its connections stay open and nothing answers, as in a network partition)
under load on two web workers: every answer still comes within the bound, every 200 is
recorded once, and a resolve made meanwhile answers promptly; all recovers once Redis thaws."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults._load import Load, account
from tests.faults.test_redis_killed import ANSWER_BOUND_SECONDS, _counted, _raise_approval

pytestmark = pytest.mark.faults

FREEZE_SECONDS = 4.0


def test_redis_frozen_mid_load__every_answer_within_the_bound__recorded_once__recovers(stack, redis_server):
    started = time.monotonic()
    # Given an installation on its own PostgreSQL and Redis, two web workers, and validate load
    # with calls counted in Redis among them
    stack.seed()
    web = stack.start_web(workers=2)
    approval_id = _raise_approval(web.url, stack.api_key, "frozen-resolve")
    kinds = ("allow", "deny", "rate_limited", "allow", "require_approval", "rate_limited")
    with Load(web.url, stack.api_key, concurrency=6, kinds=kinds) as load:
        load.wait_for_successes(30, after=started, timeout=20)

        # When Redis stops answering mid-load, a person resolves an approval meanwhile, and
        # Redis answers again four seconds later
        redis_server.freeze()
        frozen = time.monotonic()
        time.sleep(0.5)
        sent = time.monotonic()
        resolve = httpx.post(
            f"{web.url}/v1/approvals/{approval_id}/resolve",
            headers={"X-Veto-API-Key": stack.approver_key},
            json={"action": "approve", "resolvedBy": "alice"},
            timeout=60,
        )
        resolve_took = time.monotonic() - sent
        time.sleep(max(0.0, frozen + FREEZE_SECONDS - time.monotonic()))
        redis_server.thaw()
        thawed = time.monotonic()
        load.wait_for(5, _counted, after=thawed, timeout=15, what="rate-limited calls counted in Redis")

    # Then every answer came within the bound (a rate-limited one fails closed rather than wait
    # on Redis), every 200 is recorded exactly once
    account(
        load.answers,
        database_url=stack.database_url,
        team_slug=stack.team,
        answer_bound=ANSWER_BOUND_SECONDS,
        other_tags={"frozen-resolve"},
    )
    assert [a for a in load.since(frozen) if a.sent_at < thawed], "no load ran while Redis was frozen"
    # ... and the resolve, committed in the database, did not wait on Redis to answer
    assert resolve.status_code == 200, resolve.text
    assert resolve_took < ANSWER_BOUND_SECONDS, f"the resolve took {resolve_took:.1f}s"
    stack.verify_audit()
    assert time.monotonic() - started < 90
