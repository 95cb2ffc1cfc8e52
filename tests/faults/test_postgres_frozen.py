"""PostgreSQL frozen (SIGSTOP on the postmaster and every backend: connections stay open and nothing
answers, as in a network partition or a stalled disk) under validate load: every answer still
comes within the bound (a JSON 503 while it hangs), every 200 is recorded exactly once, and the
same server process answers again once it thaws."""

from __future__ import annotations

import time

import pytest

from tests.faults._load import Load, account

pytestmark = pytest.mark.faults

ANSWER_BOUND_SECONDS = 2.0
FREEZE_SECONDS = 4.0


def test_postgres_frozen_mid_load__every_answer_within_the_bound__recorded_once__recovers(stack, postgres):
    started = time.monotonic()
    # Given an installation on its own PostgreSQL and Redis, one web worker, and validate load
    stack.seed()
    web = stack.start_web(workers=1)
    with Load(web.url, stack.api_key, concurrency=6) as load:
        load.wait_for_successes(30, after=started, timeout=20)

        # When PostgreSQL stops answering mid-load, and answers again four seconds later
        postgres.freeze()
        frozen = time.monotonic()
        time.sleep(FREEZE_SECONDS)
        postgres.thaw()
        thawed = time.monotonic()
        recovered = load.wait_for_successes(50, after=thawed, timeout=20)
    during = [a for a in load.since(frozen) if a.sent_at < thawed]

    # Then no answer waited on the frozen database beyond the bound, and none was lost or doubled
    account(
        load.answers, database_url=stack.database_url, team_slug=stack.team, answer_bound=ANSWER_BOUND_SECONDS
    )
    assert during, "no load ran while the database was frozen"
    # ... calls made while it hung were refused with 503s, not left waiting
    assert {a.status for a in during if a.sent_at < thawed - ANSWER_BOUND_SECONDS} == {503}
    # ... and the same server process recovered on its own
    assert recovered - thawed < 10, f"{recovered - thawed:.1f}s to recover"
    assert web.process is not None and web.process.poll() is None
    stack.verify_audit()
    assert time.monotonic() - started < 60
