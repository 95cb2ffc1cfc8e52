"""PostgreSQL stopped (``pg_ctl stop -m immediate``, a crash) under validate load: while it is away
every request is a quick JSON 503, every 200 was recorded exactly once, and the same server
process answers again once the database is back."""

from __future__ import annotations

import time

import pytest

from tests.faults._load import Load, account

pytestmark = pytest.mark.faults

ANSWER_BOUND_SECONDS = 2.0
OUTAGE_SECONDS = 3.0


def test_postgres_stopped_mid_load__quick_json_503s__every_answer_recorded_once__recovers(stack, postgres):
    started = time.monotonic()
    # Given an installation on its own PostgreSQL and Redis, one web worker, and validate load
    stack.seed()
    web = stack.start_web(workers=1)
    with Load(web.url, stack.api_key, concurrency=6) as load:
        load.wait_for_successes(30, after=started, timeout=20)

        # When PostgreSQL crashes mid-load and is started again three seconds later
        postgres.stop("immediate")
        stopped = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        postgres.start()
        restarted = time.monotonic()
        recovered = load.wait_for_successes(50, after=restarted, timeout=20)
        time.sleep(0.5)
    during = [a for a in load.since(stopped) if a.sent_at < restarted]

    # Then every failing answer was a JSON error within the bound, and no 200 went unrecorded
    # or was recorded twice
    summary = account(
        load.answers,
        database_url=stack.database_url,
        team_slug=stack.team,
        answer_bound=ANSWER_BOUND_SECONDS,
    )
    assert during, "no load ran during the outage"
    # ... while the database was away the answers were 503s, not 500s
    refused = [a for a in during if not a.ok]
    assert refused and {a.status for a in refused} == {503}, sorted({a.status for a in refused}, key=str)
    # ... and the same server process recovered on its own, every call since succeeding
    assert recovered - restarted < 10, f"{recovered - restarted:.1f}s to recover"
    after = load.since(recovered)
    assert after and all(a.ok for a in after), [a.describe() for a in after if not a.ok][:5]
    assert web.process is not None and web.process.poll() is None
    stack.verify_audit()
    assert summary.answered > 100
    assert time.monotonic() - started < 60
