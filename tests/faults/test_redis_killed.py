"""Redis SIGKILLed under validate load, on two web workers: every answer is recorded once, and the
server recovers (pub/sub wake-ups included) when Redis is back, without a restart."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.faults._load import Answer, Load, account

pytestmark = pytest.mark.faults

ANSWER_BOUND_SECONDS = 2.0
LISTENER_RETRY_SECONDS = 5.0  # common.events.listen (its reconnects)
FAIL_CLOSED_REASON = "Rate limit check failed (fail-closed): the server's state store is unreachable"


def _counted(answer: Answer) -> bool:
    return answer.ok and answer.expected == "rate_limited" and answer.body["decision"] == "allow"


def _raise_approval(url: str, key: str, tag: str) -> str:
    answer = httpx.post(
        f"{url}/v1/tools/validate",
        headers={"X-Veto-API-Key": key},
        json={
            "tool_name": "run_data_export",
            "arguments": {"bucket": "internal-x", "include_pii": True, "tag": tag},
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["approval_id"]


class LongPoll(threading.Thread):
    """``GET /v1/approvals/{id}?wait=...`` in the background; remembers the answer and when it came."""

    def __init__(self, url: str, key: str, approval_id: str, wait: float) -> None:
        super().__init__(daemon=True)
        self.request = (f"{url}/v1/approvals/{approval_id}?wait={wait:g}", {"X-Veto-API-Key": key}, wait + 10)
        self.status: str | None = None
        self.answered_at = 0.0
        self.start()
        time.sleep(0.3)  # let the request reach the server and register its waiter

    def run(self) -> None:
        url, headers, timeout = self.request
        answer = httpx.get(url, headers=headers, timeout=timeout)
        self.status = (
            answer.json().get("status") if answer.status_code == 200 else f"HTTP {answer.status_code}"
        )
        self.answered_at = time.monotonic()


def _resolve(url: str, key: str, approval_id: str) -> float:
    answer = httpx.post(
        f"{url}/v1/approvals/{approval_id}/resolve",
        headers={"X-Veto-API-Key": key},
        json={"action": "approve", "resolvedBy": "alice"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return time.monotonic()


def test_redis_killed_mid_load__every_answer_recorded_once__long_polls_and_load_recover(stack, redis_server):
    started = time.monotonic()
    # Given an installation on its own PostgreSQL and Redis, two web workers, and validate load
    stack.seed()
    web = stack.start_web(workers=2)
    across_outage = _raise_approval(web.url, stack.api_key, "long-poll-1")
    after_outage = _raise_approval(web.url, stack.api_key, "long-poll-2")
    kinds = ("allow", "deny", "rate_limited", "allow", "require_approval", "rate_limited")
    with Load(web.url, stack.api_key, concurrency=6, kinds=kinds) as load:
        load.wait_for_successes(30, after=started, timeout=20)
        waiter = LongPoll(web.url, stack.api_key, across_outage, wait=12)

        # When Redis is SIGKILLed mid-load, an approval is resolved while it is away, and it
        # comes back three seconds later
        redis_server.stop()
        killed = time.monotonic()
        time.sleep(0.5)
        resolved_while_down = _resolve(web.url, stack.approver_key, across_outage)
        time.sleep(max(0.0, killed + 3 - time.monotonic()))
        starting = time.monotonic()  # from here on Redis may answer again
        redis_server.start()
        restarted = time.monotonic()
        recovered = load.wait_for_successes(30, after=restarted, timeout=20)
        counting_again = load.wait_for(
            5, _counted, after=restarted, timeout=10, what="rate-limited calls counted in Redis"
        )
        # ... and once it is back (each worker's pub/sub listener retries every 5 s), a long-poll
        # is woken by a resolve on either worker
        time.sleep(max(0.0, restarted + LISTENER_RETRY_SECONDS + 0.5 - time.monotonic()))
        second = LongPoll(web.url, stack.api_key, after_outage, wait=10)
        resolved_after = _resolve(web.url, stack.approver_key, after_outage)
        waiter.join(timeout=30)
        second.join(timeout=30)
    answers = load.answers

    # Then every answer is recorded exactly once, failures (if any) were quick JSON errors
    summary = account(
        answers,
        database_url=stack.database_url,
        team_slug=stack.team,
        answer_bound=ANSWER_BOUND_SECONDS,
        other_tags={"long-poll-1", "long-poll-2"},
    )
    # ... and decisions never needed Redis: every call during the outage was decided and recorded
    during = [a for a in load.since(killed) if a.sent_at < starting]
    assert during, "no load ran during the outage"
    assert all(a.ok for a in during), [a.describe() for a in during if not a.ok][:5]
    # ... where the rate limit could not be counted, fail-closed, and said so
    # (answered before Redis was started again: a call sent just before may be retried after it)
    uncounted = [
        a for a in during if a.expected == "rate_limited" and killed + 0.2 < a.sent_at < starting - a.elapsed
    ]
    assert uncounted and not any(_counted(a) for a in uncounted), [a.describe() for a in uncounted][:3]
    assert {a.body["reason"] for a in uncounted} == {FAIL_CLOSED_REASON}
    # ... and counted again in Redis once it was back: every such call a second later allowed
    # (each worker's pooled connections to the dead server fail once, then reconnect)
    assert counting_again - restarted < 10
    since = [a for a in load.since(max(counting_again, restarted + 1.0)) if a.expected == "rate_limited"]
    assert since and all(_counted(a) for a in since), [a.describe() for a in since if not _counted(a)][:3]
    # ... and once Redis was back, pub/sub wakes waiters again at once, without a server restart
    assert second.status == "approved"
    assert second.answered_at - resolved_after < 1.0, f"{second.answered_at - resolved_after:.2f}s"
    assert recovered - restarted < 10
    assert web.process is not None and web.process.poll() is None
    stack.verify_audit()
    assert summary.answered > 100
    assert time.monotonic() - started < 60
    # ... the long-poll waiting across the outage saw the resolve made while Redis was away
    assert waiter.status == "approved", (waiter.status, stack.logs())
    assert waiter.answered_at - resolved_while_down < ANSWER_BOUND_SECONDS + 1, (
        f"the waiter heard of the resolve {waiter.answered_at - resolved_while_down:.1f}s later"
    )
