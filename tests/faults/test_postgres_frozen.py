"""PostgreSQL frozen (SIGSTOP on the postmaster and every backend: connections stay open and nothing
answers, as in a network partition or a stalled disk) under validate load: every answer still
comes within the bound (a JSON 503 while it hangs), every 200 is recorded exactly once, and the
same server process answers again once it thaws."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.faults._load import Load, account
from tests.faults._services import OwnPostgres
from tests.faults._stack import FaultStack
from tests.faults.test_postgres_down import MixedLoad, _quick_json_503, _signed_in_cookies, _wait_until_all_ok

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


@pytest.mark.parametrize("with_validate", [True, False], ids=["with-validate", "pages-and-drf-only"])
def test_postgres_frozen__under_mixed_load__every_answer_a_quick_json_503_then_service_recovers(
    stack: FaultStack, postgres: OwnPostgres, with_validate: bool
) -> None:
    # Given the live server on its own PostgreSQL, with clients on the gateway's validate, two DRF
    # endpoints, a signed-in dashboard page and /readyz
    stack.seed()
    web = stack.start_web(VETO_API_KEY_CACHE_SECONDS="0.2")
    headers = {"X-Veto-API-Key": stack.api_key}
    validate = {"tool_name": "run_data_export", "arguments": {"bucket": "internal-reports"}}
    requests: dict[str, tuple[str, str, Any]] = {
        "validate": ("POST", "/v1/tools/validate", {"json": validate, "headers": headers}),
        "drf_tools": ("GET", "/v1/tools", {"headers": headers}),
        "drf_policies": ("GET", "/v1/policies", {"headers": headers}),
        "dashboard": ("GET", "/dashboard/", {}),
        "readyz": ("GET", "/readyz", {}),
    }
    if not with_validate:
        # Without the gateway's traffic nothing else notices the hang first: the pages' and DRF's
        # own stuck queries must be found out.
        del requests["validate"]
    cookies = _signed_in_cookies(web.url, "alice")
    with MixedLoad(web.url, requests, cookies=cookies) as load:
        started = time.monotonic()
        _wait_until_all_ok(load, after=started, timeout=20)
        assert web.process is not None
        server_pid = web.process.pid

        # When PostgreSQL stops answering (connections open) for a few seconds
        postgres.freeze()
        frozen_at = time.monotonic()
        time.sleep(FREEZE_SECONDS)
        thawed_at = time.monotonic()
        postgres.thaw()

        # Then once it answers again, every endpoint answers 200 again, with no server restart
        _wait_until_all_ok(load, after=thawed_at, timeout=20)
        load.wait_for_every_client(after=thawed_at, timeout=20)
        assert web.process.pid == server_pid and web.process.poll() is None

    # And every request sent while it hung answered a JSON 503 (Retry-After) within the bound
    during = load.since(frozen_at, thawed_at)
    bad = [r for r in during if not _quick_json_503(r, up_at=thawed_at)]
    assert not bad, f"{len(bad)} of {len(during)} answers while frozen were wrong, e.g.:\n" + "\n".join(
        r.describe() for r in bad[:10]
    )
    per_endpoint = {name: sum(r.name == name for r in during) for name in requests}
    assert min(per_endpoint.values()) >= 2, f"too little load to judge: {per_endpoint}"
    # ... and none in flight when it froze waited for the thaw either
    slow = [r for r in load.since(started) if r.elapsed > ANSWER_BOUND_SECONDS]
    assert not slow, f"{len(slow)} answers took over {ANSWER_BOUND_SECONDS}s:\n" + "\n".join(
        r.describe() for r in slow[:10]
    )
