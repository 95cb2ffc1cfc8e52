"""The web process SIGKILLed while the published SDK's pollers wait on approvals: they ride out the
restart, see what was decided meanwhile on another web node, and nothing is recorded twice."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from veto import Veto, VetoOptions
from veto.cloud.client import VetoCloudClient, VetoCloudConfig
from veto.cloud.types import ApprovalPollOptions

from tests.faults._load import CALLS, Load, account, fetch
from tests.faults._stack import Web

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = 3.0
POLL_INTERVAL = 0.2


class ExportTool:
    """A tool in the shape veto.wrap() expects (LangChain style: .name and async .func(dict))."""

    name = "run_data_export"
    description = "Export a customer dataset"

    def __init__(self) -> None:
        self.ran_with: list[dict[str, Any]] = []

    async def func(self, arguments: dict[str, Any]) -> str:
        self.ran_with.append(arguments)
        return "exported"


class Agents(threading.Thread):
    """In one event loop of their own: three SDK clients that raised approvals and poll them as
    the SDK does, and one agent whose wrapped tool waits for its approval (Veto.init)."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.approval_ids: list[str] = []
        self.raised = threading.Event()
        self.polled: dict[str, tuple[str, float]] = {}  # approval id -> (status, when seen)
        self.tool = ExportTool()
        self.wrapped_outcome: Any = None
        self.wrapped_done_at = 0.0
        self.start()
        assert self.raised.wait(timeout=20), "the agents did not raise their approvals"

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        clients = [
            VetoCloudClient(VetoCloudConfig(api_key=self.key, base_url=self.url, retries=0)) for _ in range(3)
        ]
        veto = await Veto.init(
            VetoOptions(
                api_key=self.key,
                base_url=self.url,
                approval_poll_interval=POLL_INTERVAL,
                approval_timeout=60,
                log_level="silent",
            )
        )
        try:
            for n, client in enumerate(clients):
                answer = await client.validate(
                    "run_data_export", {**CALLS["require_approval"], "tag": f"sdk-poller-{n}"}
                )
                assert answer.decision == "require_approval", answer
                self.approval_ids.append(answer.approval_id)
            self.raised.set()
            await asyncio.gather(
                *(
                    self._poll(client, approval_id)
                    for client, approval_id in zip(clients, self.approval_ids, strict=True)
                ),
                self._wrapped(veto),
            )
        finally:
            self.raised.set()
            for client in clients:
                await client.close()
            await veto.close()

    async def _poll(self, client: VetoCloudClient, approval_id: str) -> None:
        options = ApprovalPollOptions(poll_interval=POLL_INTERVAL, timeout=60)
        data = await client.poll_approval(approval_id, options)
        self.polled[approval_id] = (data.status, time.monotonic())

    async def _wrapped(self, veto: Veto) -> None:
        tool = veto.wrap([self.tool])[0]
        try:
            self.wrapped_outcome = await tool.func({**CALLS["require_approval"], "tag": "sdk-wrapped"})
        except Exception as exc:  # noqa: BLE001 - the SDK raises ToolCallDeniedError on a deny
            self.wrapped_outcome = exc
        self.wrapped_done_at = time.monotonic()


def _resolve(web: Web, key: str, approval_id: str, action: str) -> float:
    answer = httpx.post(
        f"{web.url}/v1/approvals/{approval_id}/resolve",
        headers={"X-Veto-API-Key": key},
        json={"action": action, "resolvedBy": "alice", "comment": "fault test"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return time.monotonic()


def test_web_killed_while_sdk_pollers_wait__they_see_decisions_made_meanwhile__nothing_doubled(stack):
    started = time.monotonic()
    db = stack.database_url
    # Given two web nodes on one database and Redis, SDK agents waiting on approvals through the
    # first, and validate load on it
    stack.seed()
    web = stack.start_web(workers=1)
    other = Web(env=web.env, log_path=stack.directory / "other-web.log", workers=1)
    other.start()
    try:
        with Load(web.url, stack.api_key, concurrency=3, pause=0.05) as load:
            agents = Agents(web.url, stack.api_key)
            wrapped_id = _wait_for_approval(db, "sdk-wrapped")
            first, second, third = agents.approval_ids
            load.wait_for_successes(20, after=started, timeout=20)

            # When the first node is SIGKILLed, two approvals are decided on the other node while
            # it is down, and it is started again on its port
            web.kill()
            killed = time.monotonic()
            resolved = {
                first: ("approved", _resolve(other, stack.approver_key, first, "approve")),
                wrapped_id: ("approved", _resolve(other, stack.approver_key, wrapped_id, "approve")),
            }
            time.sleep(max(0.0, killed + OUTAGE_SECONDS - time.monotonic()))
            web.start()
            back = time.monotonic()
            # ... and once it is back, the other two are decided through it
            resolved[second] = ("denied", _resolve(web, stack.approver_key, second, "deny"))
            resolved[third] = ("approved", _resolve(web, stack.approver_key, third, "approve"))
            agents.join(timeout=30)
            load.wait_for_successes(20, after=back, timeout=20)
    finally:
        other.stop()

    # Then every poller saw its decision, soon after it was made or after the node came back
    assert not agents.is_alive(), "an SDK poller is still waiting"
    for approval_id in (first, second, third):
        status, seen = agents.polled[approval_id]
        expected, decided = resolved[approval_id]
        assert status == expected
        assert seen - max(decided, back) < 2.0, f"seen {seen - max(decided, back):.1f}s after it could be"
    # ... the wrapped tool ran once, with its arguments, after its approval
    assert agents.wrapped_outcome == "exported", agents.wrapped_outcome
    assert agents.tool.ran_with == [{**CALLS["require_approval"], "tag": "sdk-wrapped"}]
    assert agents.wrapped_done_at - back < 2.0
    # ... every validate answer was recorded exactly once (calls cut off by the kill may have
    # no answer), the SDK's calls too, and every approval was decided exactly once
    summary = account(
        load.answers,
        database_url=db,
        team_slug=stack.team,
        transport_errors_allowed=True,
        other_tags={"sdk-poller-0", "sdk-poller-1", "sdk-poller-2", "sdk-wrapped"},
    )
    decided = Counter(
        fetch(
            db,
            "SELECT approval_id::text, action FROM approvals_approvalevent WHERE approval_id::text = ANY(%s)",
            [list(resolved)],
        )
    )
    assert decided == {
        **{(a, "approve"): 1 for a, (status, _) in resolved.items() if status == "approved"},
        **{(a, "approved"): 1 for a, (status, _) in resolved.items() if status == "approved"},
        (second, "deny"): 1,
    }, decided
    assert web.process is not None and web.process.poll() is None
    stack.verify_audit()
    assert summary.answered > 20
    assert time.monotonic() - started < 60


def _wait_for_approval(database_url: str, tag: str) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = fetch(
            database_url,
            "SELECT approval_id::text FROM audit_decisionrecord WHERE arguments->>'tag' = %s AND approval_id IS NOT NULL",
            [tag],
        )
        if rows:
            return rows[0][0]
        time.sleep(0.05)
    raise AssertionError(f"no approval was raised for {tag}")
