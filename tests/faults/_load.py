"""Load for the fault tests, and the accounting that checks it against the database afterwards.

Every validate call carries a unique ``tag`` argument, so each answer can be matched to the
decision row it says was recorded (or, for a failed answer, to at most one row that may have
been written before the failure showed).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psycopg

# The calls the fault team's rules decide (see _seed.fault_rules): kind -> arguments. Each kind
# is the decision it gets, except "rate_limited" (send_sms, counted in Redis): allow while the
# counter is reachable, deny (fail-closed) while it is not.
CALLS: dict[str, dict[str, Any]] = {
    "allow": {"bucket": "internal-reports"},
    "deny": {"bucket": "s3://public-dump"},
    "require_approval": {"bucket": "internal-reports", "include_pii": True},
    "rate_limited": {"to": "+15550100"},
}
TOOLS = {"rate_limited": "send_sms"}
DECISIONS = {"rate_limited": {"allow", "deny"}}


@dataclass(frozen=True)
class Answer:
    tag: str
    expected: str
    sent_at: float  # time.monotonic() when the request went out
    elapsed: float
    status: int | None  # None: no HTTP answer at all (connection refused or reset, timeout)
    body: Any  # parsed JSON, or None when the body was not JSON
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def describe(self) -> str:
        return f"{self.tag} {self.expected} status={self.status} {self.elapsed:.2f}s {str(self.body)[:160]} {self.error}"


@dataclass
class Load:
    """Closed-loop validate load from ``concurrency`` clients, in a thread of its own so that the
    test can stop and start services meanwhile. ``kinds`` cycles through allow/deny/approval."""

    url: str
    api_key: str
    concurrency: int = 6
    timeout: float = 5.0
    pause: float = 0.01
    kinds: tuple[str, ...] = ("allow", "deny", "allow", "require_approval")
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 10)
            assert not self._thread.is_alive(), "the load generator did not stop"
            self._thread = None

    def since(self, moment: float) -> list[Answer]:
        return [a for a in list(self.answers) if a.sent_at >= moment]

    def wait_for_successes(self, count: int, *, after: float, timeout: float) -> float:
        """Block until ``count`` answers sent after ``after`` were 200; returns when that was."""
        return self.wait_for(count, lambda a: a.ok, after=after, timeout=timeout, what="successes")

    def wait_for(
        self, count: int, matches: Callable[[Answer], bool], *, after: float, timeout: float, what: str
    ) -> float:
        """Block until ``count`` answers sent after ``after`` ``matches``; returns when that was."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(matches(a) for a in self.since(after)) >= count:
                return time.monotonic()
            time.sleep(0.05)
        recent = self.since(after)[-5:]
        raise AssertionError(
            f"not within {timeout}s: fewer than {count} {what} since; last answers:\n"
            + "\n".join(a.describe() for a in recent)
        )

    async def _main(self) -> None:
        kinds = itertools.cycle(self.kinds)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        headers = {"X-Veto-API-Key": self.api_key, "Content-Type": "application/json"}
        # force_close: a fresh connection per call, so a killed and restarted server is reached
        # again at once instead of through a pool of dead keep-alive sockets.
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(timeout=timeout, headers=headers, connector=connector) as session:
            await asyncio.gather(*(self._client(session, kinds) for _ in range(self.concurrency)))

    async def _client(self, session: aiohttp.ClientSession, kinds: Iterable[str]) -> None:
        iterator = iter(kinds)
        while not self._stop.is_set():
            expected = next(iterator)
            tag = uuid.uuid4().hex
            tool = TOOLS.get(expected, "run_data_export")
            payload = {"tool_name": tool, "arguments": {**CALLS[expected], "tag": tag}}
            sent_at = time.monotonic()
            status: int | None = None
            body: Any = None
            error = ""
            try:
                async with session.post(
                    f"{self.url}/v1/tools/validate", data=json.dumps(payload)
                ) as response:
                    status = response.status
                    text = await response.text()
                    try:
                        body = json.loads(text)
                    except ValueError:
                        body = None
                        error = f"not JSON: {text[:200]!r}"
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                # Also after the status line: a body cut off by a killed server (ClientPayloadError)
                # is no answer either, the client never learnt the decision.
                status, body = None, None
                error = f"{type(exc).__name__}: {exc}"
            self.answers.append(
                Answer(tag, expected, sent_at, time.monotonic() - sent_at, status, body, error)
            )
            if status != 200:
                await asyncio.sleep(0.05)  # a failing server is not hammered in a tight loop
            await asyncio.sleep(self.pause)


@dataclass(frozen=True)
class Accounting:
    answered: int
    failed: int
    rows: int
    longest_failure: float
    longest_answer: float


def account(
    answers: list[Answer],
    *,
    database_url: str,
    team_slug: str,
    transport_errors_allowed: bool = False,
    answer_bound: float = 2.0,
    other_tags: Iterable[str] = (),
) -> Accounting:
    """Check ``answers`` against the team's decision rows; raise AssertionError naming what is wrong.

    - every 200 answer has exactly one row with its tag, with the decision (and decision id) it
      answered, and a ``require_approval`` one has exactly one approval;
    - no tag has two rows; a row whose answer was not a 200 belongs to a failed request (its
      write may have committed just before the failure) and is never doubled either;
    - every failing answer is a JSON error (``{"error": {...}}``, 4xx/5xx); without
      ``transport_errors_allowed`` a refused or timed-out connection is a failure too;
    - every answer, failing or not (a refused connection too), came back within ``answer_bound``
      seconds: a request that hangs until an outage is over and then succeeds is as stuck as one
      that fails late.

    ``other_tags``: calls the test made outside the load, each recorded exactly once as well.
    """
    by_tag = {a.tag: a for a in answers}
    assert len(by_tag) == len(answers), "the load generator reused a tag"
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT d.arguments->>'tag', d.id::text, d.decision, d.approval_id::text,"
            " (SELECT count(*) FROM approvals_approval a WHERE a.id = d.approval_id)"
            " FROM audit_decisionrecord d JOIN tenancy_team t ON t.id = d.team_id WHERE t.slug = %s",
            [team_slug],
        ).fetchall()
    counts = Counter(row[0] for row in rows)
    doubled = {tag: n for tag, n in counts.items() if n > 1}
    assert not doubled, f"{len(doubled)} requests recorded more than once: {list(doubled.items())[:5]}"
    others = set(other_tags)
    missing_others = others - set(counts)
    assert not missing_others, f"calls made outside the load were not recorded: {missing_others}"
    strangers = [row for row in rows if row[0] not in by_tag and row[0] not in others]
    assert not strangers, f"{len(strangers)} rows no request of this test sent: {strangers[:5]}"
    recorded = {row[0]: row for row in rows}

    problems: list[str] = []
    failures = [a for a in answers if not a.ok]
    for answer in answers:
        row = recorded.get(answer.tag)
        if answer.ok:
            if row is None:
                problems.append(f"answered but not recorded: {answer.describe()}")
                continue
            _, row_id, decision, approval_id, approvals = row
            body = answer.body or {}
            if body.get("decision") not in DECISIONS.get(answer.expected, {answer.expected}) or (
                decision != body.get("decision")
            ):
                problems.append(
                    f"decided {body.get('decision')!r}, recorded {decision!r}: {answer.describe()}"
                )
            if (body.get("metadata") or {}).get("decision_id") != row_id:
                problems.append(f"answer names another decision id than row {row_id}: {answer.describe()}")
            if answer.expected == "require_approval" and (
                approval_id is None or approvals != 1 or body.get("approval_id") != approval_id
            ):
                problems.append(f"approval {approval_id} x{approvals} for {answer.describe()}")
        elif answer.status is None:
            if not transport_errors_allowed:
                problems.append(f"no HTTP answer: {answer.describe()}")
        else:
            error = answer.body.get("error") if isinstance(answer.body, dict) else None
            if answer.status < 400 or not isinstance(error, dict) or not {"code", "message"} <= set(error):
                problems.append(f"a failure that is not a JSON 4xx/5xx error: {answer.describe()}")
    slow = [a for a in answers if a.elapsed > answer_bound]
    if slow:
        problems.append(
            f"{len(slow)} answers took over {answer_bound}s ({sum(a.ok for a in slow)} of them 200s), e.g. "
            + "; ".join(a.describe() for a in slow[:3])
        )
    assert not problems, f"{len(problems)} problems in {len(answers)} answers:\n" + "\n".join(problems[:15])
    return Accounting(
        answered=sum(a.ok for a in answers),
        failed=len(failures),
        rows=len(rows),
        longest_failure=max((a.elapsed for a in failures if a.status is not None), default=0.0),
        longest_answer=max((a.elapsed for a in answers if a.status is not None), default=0.0),
    )


def fetch(database_url: str, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of one query on the test's own database (psycopg straight, not the test's Django)."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        return connection.execute(sql, list(params)).fetchall()
