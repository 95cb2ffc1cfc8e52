"""The Celery worker SIGKILLed while approvals fall due: polls read them expired meanwhile, and the
restarted worker expires each one exactly once (one trail line, one chained audit event)."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pytest

from tests.faults._load import Load, account, fetch

pytestmark = pytest.mark.faults

APPROVAL_TIMEOUT_SECONDS = 2
SWEEP = {"VETO_APPROVAL_SWEEP_SECONDS": "0.5"}
OVERDUE_SQL = (
    "SELECT id::text FROM approvals_approval WHERE status = 'pending'"
    " AND expires_at < now() - make_interval(secs => %s) ORDER BY expires_at"
)


def _wait_until(condition, *, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_worker_killed_while_approvals_fall_due__read_expired__expired_once_after_restart(stack):
    started = time.monotonic()
    db = stack.database_url
    # Given approvals with a 2-second deadline raised all along, a web server, worker and beat
    stack.seed(approval_timeout=APPROVAL_TIMEOUT_SECONDS)
    web = stack.start_web(workers=1, **SWEEP)
    stack.start_celery(**SWEEP)
    headers = {"X-Veto-API-Key": stack.api_key}
    with Load(web.url, stack.api_key, concurrency=2, pause=0.2, kinds=("allow", "require_approval")) as load:
        _wait_until(
            lambda: fetch(db, "SELECT count(*) FROM approvals_approval WHERE status = 'expired'")[0][0] >= 3,
            timeout=30,
            what="the live worker expiring due approvals",
        )

        # When the worker is SIGKILLed and approvals fall due while it is down
        stack.kill_worker()
        killed = time.monotonic()
        time.sleep(APPROVAL_TIMEOUT_SECONDS + 1)
        overdue = [row[0] for row in fetch(db, OVERDUE_SQL, [0.5])]
        polled = {
            approval_id: httpx.get(f"{web.url}/v1/approvals/{approval_id}", headers=headers, timeout=5)
            for approval_id in overdue[:5]
        }
        # ... a long-poll on one still running answers at its deadline, with no worker to sweep it
        running = fetch(
            db,
            "SELECT id::text, extract(epoch FROM expires_at - now())::float8 FROM approvals_approval"
            " WHERE status = 'pending' AND expires_at > now() + interval '1 second' ORDER BY expires_at LIMIT 1",
        )[0]
        waited_from = time.monotonic()
        long_poll = httpx.get(f"{web.url}/v1/approvals/{running[0]}?wait=8", headers=headers, timeout=15)
        long_poll_took = time.monotonic() - waited_from

        # ... and the worker is started again
        stack.restart_worker()
        restarted = time.monotonic()
        caught_up = _wait_until(
            lambda: not fetch(db, OVERDUE_SQL, [1.0]), timeout=30, what="the restarted worker catching up"
        )
    _wait_until(
        lambda: not fetch(db, "SELECT 1 FROM approvals_approval WHERE status = 'pending'"),
        timeout=APPROVAL_TIMEOUT_SECONDS + 10,
        what="the last approvals expiring",
    )

    # Then every answer is recorded exactly once
    account(load.answers, database_url=db, team_slug=stack.team)
    # ... the outage really left approvals overdue, and the restarted worker expired every one
    # of them exactly once: status, one trail line, one chained audit event
    assert overdue, "no approval fell due while the worker was down"
    approvals = dict(fetch(db, "SELECT id::text, status || ' ' || resolved_by FROM approvals_approval"))
    due = set(approvals)  # by now every approval's deadline has passed
    assert set(overdue) <= due
    assert {approvals[i] for i in due} == {"expired system:timeout"}, Counter(approvals[i] for i in due)
    trail = Counter(
        fetch(db, "SELECT approval_id::text, action FROM approvals_approvalevent WHERE action = 'expired'")
    )
    assert {approval_id for approval_id, _ in trail} == due
    assert set(trail.values()) == {1}, [k for k, n in trail.items() if n > 1][:5]
    chained = Counter(
        json.loads(record)["details"]["approval_id"]
        for (record,) in fetch(db, "SELECT record FROM audit_auditevent WHERE kind = 'approval.action'")
    )
    assert set(chained) == due and set(chained.values()) == {1}, [k for k, n in chained.items() if n > 1][:5]
    stack.verify_audit()
    assert caught_up - restarted < 20
    assert time.monotonic() - started < 90
    # ... and while the worker was down, polls past the deadline already read the approval
    # expired (the agent is denied on time), and the long-poll answered at the deadline
    assert {a: (r.status_code, r.json().get("status")) for a, r in polled.items()} == {
        a: (200, "expired") for a in polled
    }
    assert (long_poll.status_code, long_poll.json()["status"]) == (200, "expired"), long_poll.text
    assert long_poll_took < running[1] + 1.5, f"{long_poll_took:.1f}s for a deadline {running[1]:.1f}s away"
    assert killed < restarted
