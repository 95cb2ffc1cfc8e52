#!/usr/bin/env python
"""More than one web node (issue 14): throughput behind HAProxy with 1, 2 and 3 nodes, and what
must hold across nodes.

Each node is a ``python -m veto_cloud.serve`` process (WEB_CONCURRENCY=1) on its own port, standing
in for a machine; all share one PostgreSQL database and one Redis database. HAProxy (Debian's
package, run here as this script's own process with deploy/haproxy/haproxy.cfg, the file
docker-compose runs, adapted to loopback ports by ``haproxy_config``) balances them round robin;
the load and the checks talk to it, unless a check is about one particular node.

1. Throughput: a fresh database (DATABASE_URL, default .../veto_multinode), migrated and seeded
   (seed_demo, plus ``RATE_LIMIT_RULE``); for each --nodes count, wrk (32 connections, the C load
   generator of benchmarks/validate_throughput.py, the same validate mix: 80 % allow, 10 % deny,
   10 % require_approval) through HAProxy, a warm-up then --runs runs of --seconds; after each run
   the decision rows written during it must cover every answered request. The spread over nodes
   is HAProxy's per-server count. One node without HAProxy too, for the balancer's own cost.
2. Checks, on three nodes (more if --nodes asks for more; ``run_checks``; tests/test_multi_node.py runs
   the same functions):
   a. ``check_rate_limit``: calls of one agent spread round-robin over every node admit exactly
      the rule's limit (the counters are one Lua script in Redis);
   b. ``check_long_poll``: an approval raised through node A, long-polled on node B
      (``GET /v1/approvals/{id}?wait=``), resolved through node C's API: B answers within
      ``HAND_OFF_BOUND`` of the resolve (the nodes' database recheck is set far above it, so only
      the Redis wake-up can do that);
   c. ``check_live_events``: a dashboard websocket (``/ws/live/``, signed-in session) and an SSE
      stream (``GET /v1/events/stream``) on node B, one more websocket through HAProxy, all see a
      decision made on node A;
   d. ``check_node_killed``: tagged validate load through HAProxy, one node SIGKILLed (its whole
      process group) mid-load: every 200 has its decision row (and its approval), nothing is
      recorded twice, every failure is a JSON error from HAProxy or a node, and the survivors go
      on answering.

On a 2-core machine the nodes, PostgreSQL, Redis, HAProxy and wrk share the same two cores: more
nodes cannot add CPU, so "scaling" here is bounded by the cores (see the README's Performance).

Usage:  .venv/bin/python benchmarks/multi_node.py [--nodes 1,2,3] [--seconds 10] [--runs 3]
        [--json benchmarks/results/multi-node.json]     (--checks-only: just part 2)
Needs:  haproxy (apt-get install -y haproxy; installed here when missing), wrk, PostgreSQL, Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psycopg
import websockets

ROOT = Path(__file__).resolve().parents[1]
# The repository (tests.faults._load) and this directory (validate_throughput), at the end of the
# path: imported by tests/test_multi_node.py, nothing of benchmarks/ may shadow another module.
for _path in (ROOT, ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

from validate_throughput import (  # noqa: E402
    API_KEY,
    APPROVER_KEY,
    CONNECTIONS,
    VALIDATE_BODIES,
    decision_count,
    free_port,
    lua_for,
    machine,
    run_wrk,
    seeded_environment,
)

from tests.faults._load import Answer, Load  # noqa: E402

RATE_LIMIT = 25
RATE_LIMITED_TOOL = "send_sms"
# Appended to the rules a team runs: one agent may send RATE_LIMIT texts a minute, whichever node
# it reaches. Each check uses an agent id of its own, so its window starts empty.
RATE_LIMIT_RULE = f"""\
  - name: sms_rate
    tool: {RATE_LIMITED_TOOL}
    action: deny
    message: too many texts for one agent
    rate_limits: [{{scope: agent, window_seconds: 60, max_calls: {RATE_LIMIT}}}]
"""
PII_EXPORT = {"bucket": "internal-reports", "include_pii": True}
PLAIN_EXPORT = {"bucket": "internal-reports", "rows": 10}
# The checks' nodes re-read a waiting approval from the database only this rarely, so a long-poll
# answered within HAND_OFF_BOUND of the resolve was woken across nodes (Redis pub/sub).
CHECK_NODE_ENV = {"VETO_APPROVAL_WAIT_RECHECK_SECONDS": "20"}
HAND_OFF_BOUND = 1.0
LIVE_BOUND = 3.0
ROW = re.compile(r'<tr id="decision-([0-9a-f-]{36})"')

HAPROXY_CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"


def haproxy_config(*, port: int, servers: dict[str, int], directory: Path, threads: int | None = None) -> str:
    """deploy/haproxy/haproxy.cfg (what docker-compose runs) for these nodes: its ``bind`` on
    ``port`` and the nodes as fixed loopback servers instead of Docker's DNS; plus a stats socket
    in ``directory`` (the checks read each node's state and counts there); ``threads``: HAProxy's
    ``nbthread`` (its default is one per core). Nothing else changes."""
    text = HAPROXY_CONFIG.read_text()
    replaced = {
        "    bind :8000\n": f"    bind 127.0.0.1:{port}\n",
        "    maxconn 4096\n": f"    maxconn 4096\n    stats socket {directory}/admin.sock mode 600 level admin\n"
        + (f"    nbthread {threads}\n" if threads else ""),
    }
    for old, new in replaced.items():
        assert text.count(old) == 1, f"{HAPROXY_CONFIG} no longer has {old!r}"
        text = text.replace(old, new)
    template = re.compile(r"^    server-template .*$", re.M)
    assert len(template.findall(text)) == 1, f"{HAPROXY_CONFIG}: one server-template line expected"
    lines = "\n".join(
        f"    server {name} 127.0.0.1:{server_port} check" for name, server_port in servers.items()
    )
    return template.sub(lambda _: lines, text)


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        raise RuntimeError("haproxy is not installed: apt-get install -y haproxy (Debian's package)")
    return found


def ensure_haproxy() -> str:
    """The benchmark installs Debian's package when it is missing (the tests only say so)."""
    with contextlib.suppress(RuntimeError):
        return haproxy_binary()
    print("installing haproxy (Debian's package)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "haproxy"], check=True, capture_output=True)
    return haproxy_binary()


@dataclass
class Node:
    """One web node: ``python -m veto_cloud.serve`` with one worker, in its own process group."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "veto_cloud.serve"],
                cwd=ROOT,
                env={**self.env, "HOST": "127.0.0.1", "PORT": str(self.port), "WEB_CONCURRENCY": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            if self.process is None or self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        """SIGKILL to the node's whole process group at once, as a lost machine."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    """``count`` nodes on one database and Redis, and HAProxy in front of them."""

    env: dict[str, str]
    count: int
    directory: Path
    haproxy_threads: int | None = None
    nodes: list[Node] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    haproxy: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Cluster:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.nodes = [
                Node(f"node{n}", self.env, self.directory / f"node{n}.log") for n in range(1, self.count + 1)
            ]
            for node in self.nodes:  # all at once: each takes seconds to boot
                node.start()
            for node in self.nodes:
                node.wait_ready()
            config = self.directory / "haproxy.cfg"
            config.write_text(
                haproxy_config(
                    port=self.port,
                    servers={n.name: n.port for n in self.nodes},
                    directory=self.directory,
                    threads=self.haproxy_threads,
                )
            )
            with (self.directory / "haproxy.log").open("w") as log:
                self.haproxy = subprocess.Popen(
                    [haproxy_binary(), "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
                )
            self.wait_for(lambda status: all(status.get(n.name) == "UP" for n in self.nodes), "all nodes UP")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(timeout=10)
        for node in self.nodes:
            node.stop()

    def stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's ``show stat`` for the backend's servers: name -> CSV fields."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(self.directory / "admin.sock"))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        text = data.decode().lstrip("# ")
        rows = csv.DictReader(line for line in text.splitlines() if line)
        return {
            row["svname"]: row
            for row in rows
            if row["pxname"] == "web" and row["svname"] not in ("BACKEND", "FRONTEND")
        }

    def status(self) -> dict[str, str]:
        return {name: row["status"].split()[0] for name, row in self.stats().items()}

    def served(self) -> dict[str, int]:
        """Requests each node answered so far (HAProxy's cumulative session count)."""
        return {name: int(row["stot"]) for name, row in self.stats().items()}

    def wait_for(self, condition: Any, what: str, timeout: float = 15) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.haproxy is not None and self.haproxy.poll() is None:
            with contextlib.suppress(OSError):
                if condition(self.status()):
                    return time.monotonic()
            time.sleep(0.05)
        log = (self.directory / "haproxy.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"HAProxy: not {what} within {timeout} s:\n{log}")


@dataclass(frozen=True)
class Team:
    """What the checks need of the team they drive: its keys, a signed-in person, its database."""

    slug: str
    api_key: str  # the team's key (validate, long-polls, the event stream)
    approver_key: str  # a personal key of someone in the rule's approver group
    username: str  # a member who may sign in to the dashboard
    password: str
    database_url: str


# --- the checks ----------------------------------------------------------------------------------


def _validate(url: str, key: str, tool: str, arguments: dict[str, Any], **context: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/tools/validate",
        headers={"X-Veto-API-Key": key},
        json={"tool_name": tool, "arguments": arguments, "context": context},
        timeout=10,
    )


def check_rate_limit(cluster: Cluster, team: Team, *, calls: int = 3 * RATE_LIMIT + 15) -> dict[str, Any]:
    """``calls`` calls of one agent, 10 at a time, through HAProxy's round robin."""
    agent = f"agent-{uuid.uuid4().hex[:12]}"

    async def work() -> list[tuple[int, str, str]]:
        semaphore = asyncio.Semaphore(10)
        headers = {"X-Veto-API-Key": team.api_key}
        body = {
            "tool_name": RATE_LIMITED_TOOL,
            "arguments": {"to": "+15550100"},
            "context": {"agent_id": agent},
        }
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:

            async def one() -> tuple[int, str, str]:
                async with semaphore:
                    async with session.post(
                        f"{cluster.url}/v1/tools/validate", json=body, headers=headers
                    ) as r:
                        answer = await r.json()
                        return r.status, str(answer.get("decision")), r.headers.get("X-Veto-Node", "")

            return list(await asyncio.gather(*(one() for _ in range(calls))))

    answers = asyncio.run(work())
    decisions = Counter(decision for status, decision, _ in answers if status == 200)
    nodes = Counter(node for _, _, node in answers)
    ok = (
        all(status == 200 for status, _, _ in answers)
        and decisions == {"allow": RATE_LIMIT, "deny": calls - RATE_LIMIT}
        and len(nodes) == cluster.count
    )
    return {
        "ok": ok,
        "calls": calls,
        "limit": RATE_LIMIT,
        "decisions": dict(decisions),
        "by_node": dict(nodes),
    }


def check_long_poll(cluster: Cluster, team: Team) -> dict[str, Any]:
    """Raised on node A, long-polled on node B, resolved through node C (B and C: A when fewer)."""
    a, b, c = (cluster.nodes[i % cluster.count] for i in range(3))
    raised = _validate(a.url, team.api_key, "run_data_export", PII_EXPORT).json()
    approval_id = raised.get("approval_id")
    if raised.get("decision") != "require_approval" or not approval_id:
        return {"ok": False, "raised": raised}

    async def work() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=40) as client:
            heard: list[float] = []

            async def long_poll() -> httpx.Response:
                response = await client.get(
                    f"{b.url}/v1/approvals/{approval_id}?wait=30", headers={"X-Veto-API-Key": team.api_key}
                )
                heard.append(time.monotonic())
                return response

            poll = asyncio.create_task(long_poll())
            await asyncio.sleep(1.0)  # the long-poll is waiting on B by now
            early = poll.done()
            sent = time.monotonic()
            resolved = await client.post(
                f"{c.url}/v1/approvals/{approval_id}/resolve",
                headers={"X-Veto-API-Key": team.approver_key},
                json={"action": "approve", "comment": "multi-node check"},
            )
            done = time.monotonic()
            answer = await poll
            return {
                "answered_before_the_resolve": early,
                "resolve_status": resolved.status_code,
                "long_poll_status": answer.status_code,
                "long_poll_approval_status": answer.json().get("status"),
                # Negative: the long-poll's answer arrived before the resolve's own (the wake-up
                # goes out at the commit).
                "hand_off_after_resolve_response_ms": round((heard[0] - done) * 1000, 1),
                "hand_off_after_resolve_request_ms": round((heard[0] - sent) * 1000, 1),
            }

    result = asyncio.run(work())
    result["nodes"] = {"raised_on": a.name, "long_polled_on": b.name, "resolved_on": c.name}
    result["ok"] = (
        not result["answered_before_the_resolve"]
        and result["resolve_status"] == 200
        and result["long_poll_status"] == 200
        and result["long_poll_approval_status"] == "approved"
        and result["hand_off_after_resolve_response_ms"] < HAND_OFF_BOUND * 1000
    )
    return result


def session_cookie(url: str, team: Team) -> str:
    """Sign in on ``url`` as a browser does; the session cookie (valid on every node: one database)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        form = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token is not None, form.text[:500]
        response = client.post(
            "/accounts/login/",
            data={
                "username": team.username,
                "password": team.password,
                "csrfmiddlewaretoken": token.group(1),
            },
            headers={"Referer": f"{url}/accounts/login/"},
        )
        assert response.status_code == 302, response.text[:500]
        name = next(name for name in client.cookies if "session" in name)
        return f"{name}={client.cookies[name]}"


async def _socket_sees(
    url: str, cookie: str, team: Team, opened: asyncio.Event, decision_id: asyncio.Future[str]
) -> float | None:
    """Seconds from the decision's answer until a websocket opened on ``url`` shows its row."""
    query = f"kinds=decisions&team={team.slug}&rows=1"
    async with websockets.connect(
        url.replace("http://", "ws://") + "/ws/live/?" + query,
        additional_headers={"Cookie": cookie},
        origin=url,  # type: ignore[arg-type]
        open_timeout=5,
    ) as socket_:
        opened.set()
        wanted = await decision_id
        answered = time.monotonic()
        deadline = answered + LIVE_BOUND
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(socket_.recv(), timeout=left)
            except (TimeoutError, websockets.exceptions.ConnectionClosed):
                return None
            if wanted in ROW.findall(str(message)):
                return time.monotonic() - answered
    return None


async def _stream_sees(
    url: str, team: Team, opened: asyncio.Event, decision_id: asyncio.Future[str]
) -> float | None:
    """Seconds from the decision's answer until an SSE stream opened on ``url`` names it."""
    timeout = aiohttp.ClientTimeout(total=LIVE_BOUND + 10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(
            f"{url}/v1/events/stream?types=decision.created", headers={"X-Veto-API-Key": team.api_key}
        ) as response:
            if response.status != 200:
                return None
            opened.set()
            wanted = await decision_id
            answered = time.monotonic()
            while time.monotonic() - answered < LIVE_BOUND:
                try:
                    line = await asyncio.wait_for(response.content.readline(), LIVE_BOUND)
                except TimeoutError:
                    return None
                if line.startswith(b"data:") and wanted in line.decode():
                    return time.monotonic() - answered
    return None


def check_live_events(cluster: Cluster, team: Team) -> dict[str, Any]:
    """A dashboard socket and an SSE stream on node B and a socket through HAProxy see a decision
    made on node A."""
    a, b = cluster.nodes[0], cluster.nodes[1 % cluster.count]
    cookie = session_cookie(b.url, team)

    async def work() -> list[float | None]:
        decision: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        opened = [asyncio.Event() for _ in range(3)]
        watchers = [
            asyncio.create_task(_socket_sees(b.url, cookie, team, opened[0], decision)),
            asyncio.create_task(_stream_sees(b.url, team, opened[1], decision)),
            asyncio.create_task(_socket_sees(cluster.url, cookie, team, opened[2], decision)),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in opened)), 10)
        # A socket joins its groups before it is accepted; the stream's hub is open before its
        # headers go out. The pause covers the Redis SUBSCRIBE each node sends for a new group.
        await asyncio.sleep(0.3)
        answer = await asyncio.to_thread(_validate, a.url, team.api_key, "run_data_export", PLAIN_EXPORT)
        decision.set_result(str(answer.json()["metadata"]["decision_id"]))
        return list(await asyncio.gather(*watchers))

    socket_b, stream_b, socket_lb = asyncio.run(work())
    seen = {
        f"websocket on {b.name}": socket_b,
        f"SSE stream on {b.name}": stream_b,
        "websocket through HAProxy": socket_lb,
    }
    return {
        "ok": all(value is not None for value in seen.values()),
        "decided_on": a.name,
        "seen_after_ms": {k: (None if v is None else round(v * 1000, 1)) for k, v in seen.items()},
    }


def account_answers(answers: list[Answer], database_url: str) -> dict[str, Any]:
    """Every 200 has exactly one decision row with its tag, decision and id (and a require_approval
    its one approval); no tag has two rows; every failure is a JSON error."""
    tags = [answer.tag for answer in answers]
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT d.arguments->>'tag', d.id::text, d.decision, d.approval_id::text,"
            " (SELECT count(*) FROM approvals_approval a WHERE a.id = d.approval_id)"
            " FROM audit_decisionrecord d WHERE d.arguments->>'tag' = ANY(%s)",
            [tags],
        ).fetchall()
    by_tag: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_tag.setdefault(row[0], []).append(row)
    problems: list[str] = []
    for answer in answers:
        found = by_tag.get(answer.tag, [])
        if len(found) > 1:
            problems.append(f"recorded {len(found)} times: {answer.describe()}")
        if answer.ok:
            body = answer.body or {}
            if not found:
                problems.append(f"answered but not recorded: {answer.describe()}")
                continue
            _, row_id, decision, approval_id, approvals = found[0]
            if decision != body.get("decision") or (body.get("metadata") or {}).get("decision_id") != row_id:
                problems.append(f"answer and row differ ({decision} {row_id}): {answer.describe()}")
            if decision == "require_approval" and (approvals != 1 or body.get("approval_id") != approval_id):
                problems.append(f"approval {approval_id} x{approvals}: {answer.describe()}")
        else:
            error = answer.body.get("error") if isinstance(answer.body, dict) else None
            if answer.status is None or not isinstance(error, dict) or "code" not in error:
                problems.append(f"a failure that is not a JSON error: {answer.describe()}")
    failures = Counter(
        f"{a.status} {(a.body or {}).get('error', {}).get('code')}"
        if isinstance(a.body, dict)
        else str(a.status)
        for a in answers
        if not a.ok
    )
    return {
        "answers": len(answers),
        "answered_200": sum(a.ok for a in answers),
        "recorded_of_the_200s": sum(1 for a in answers if a.ok and a.tag in by_tag),
        "recorded_of_the_failures": sum(1 for a in answers if not a.ok and a.tag in by_tag),
        "failures": dict(failures),
        "problems": problems[:20],
        "problem_count": len(problems),
    }


def check_node_killed(cluster: Cluster, team: Team, *, after_kill: float = 3.0) -> dict[str, Any]:
    """Tagged validate load through HAProxy; the last node SIGKILLed mid-load."""
    victim = cluster.nodes[-1]
    started = time.monotonic()
    with Load(cluster.url, team.api_key, concurrency=8, pause=0.0, timeout=5.0) as load:
        load.wait_for_successes(60, after=started, timeout=20)
        before = cluster.served()
        victim.kill()
        killed = time.monotonic()
        down = cluster.wait_for(lambda status: status.get(victim.name) == "DOWN", f"{victim.name} DOWN")
        time.sleep(max(0.0, killed + after_kill - time.monotonic()))
    answers = list(load.answers)  # stopped: the calls in flight have their answers too
    after = cluster.served()
    summary = account_answers(answers, team.database_url)
    stats = cluster.stats()
    after_down = [a for a in answers if a.sent_at > down]
    result = {
        **summary,
        "killed": victim.name,
        "marked_down_after_ms": round((down - killed) * 1000, 1),
        "failed_after_the_kill": sum(1 for a in answers if not a.ok and a.sent_at >= killed),
        "sent_after_marked_down": len(after_down),
        "failed_after_marked_down": sum(1 for a in after_down if not a.ok),
        "served_by_node_during_the_kill": {name: after[name] - before.get(name, 0) for name in after},
        "haproxy_retries": {name: int(row["wretr"] or 0) for name, row in stats.items()},
        "haproxy_redispatches": {name: int(row["wredis"] or 0) for name, row in stats.items()},
        "longest_answer_ms": round(max(a.elapsed for a in answers) * 1000, 1),
    }
    survivors = [n.name for n in cluster.nodes if n is not victim]
    result["ok"] = (
        summary["problem_count"] == 0
        and summary["answered_200"] >= 60
        and result["failed_after_marked_down"] == 0
        and all(result["served_by_node_during_the_kill"][name] > 0 for name in survivors)
        and len(after_down) > 0
    )
    return result


def run_checks(cluster: Cluster, team: Team) -> dict[str, dict[str, Any]]:
    """(a)-(d) on one cluster, the kill last (it leaves the cluster a node short)."""
    return {
        "rate_limit": check_rate_limit(cluster, team),
        "long_poll": check_long_poll(cluster, team),
        "live_events": check_live_events(cluster, team),
        "node_killed": check_node_killed(cluster, team),
    }


# --- the benchmark -------------------------------------------------------------------------------


def publish_rules_with_rate_limit(env: dict[str, str]) -> None:
    """The demo's rule set with RATE_LIMIT_RULE appended, published as the demo team's active one."""
    code = (
        "import sys\n"
        "from policies.management.commands.seed_demo import demo_rules_source\n"
        "from policies.services import rule_set_version_create, rule_set_version_publish\n"
        "from tenancy.actor import Actor\n"
        "from tenancy.models import Team\n"
        "team = Team.objects.get(slug='demo')\n"
        "source = demo_rules_source().rstrip(chr(10)) + chr(10) + sys.stdin.read()\n"
        "version = rule_set_version_create(team=team, source_text=source)\n"
        "rule_set_version_publish(version=version, actor=Actor.process('multi_node'))\n"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        input=RATE_LIMIT_RULE,
        text=True,
        check=True,
        capture_output=True,
    )


def settled_count(database_url: str) -> int:
    """The decision rows once the requests wrk left in flight have landed (the count holds still)."""
    last = decision_count(database_url)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.3)
        count = decision_count(database_url)
        if count == last:
            return count
        last = count
    return last


def throughput(cluster: Cluster, *, seconds: int, runs: int, database_url: str, direct: bool = False) -> dict:
    url = cluster.nodes[0].url if direct else cluster.url
    script = cluster.directory / "validate.lua"
    script.write_text(
        lua_for(
            "/v1/tools/validate",
            VALIDATE_BODIES,
            {"Content-Type": "application/json", "X-Veto-API-Key": API_KEY},
        )
    )
    run_wrk(f"{url}/v1/tools/validate", min(3, seconds), script)  # warm-up
    results = []
    for _ in range(runs):
        served_before = cluster.served()
        before = settled_count(database_url)
        outcome = run_wrk(f"{url}/v1/tools/validate", seconds, script)
        outcome["rows_recorded"] = settled_count(database_url) - before
        outcome["every_answer_recorded"] = (
            outcome["socket_errors"] == 0
            and outcome["non_2xx"] == 0
            and outcome["requests"] <= outcome["rows_recorded"] <= outcome["requests"] + CONNECTIONS
        )
        served_after = cluster.served()
        outcome["by_node"] = {name: served_after[name] - served_before.get(name, 0) for name in served_after}
        results.append(outcome)
        print(
            f"  {cluster.count} node(s){' direct' if direct else ''}: {outcome['rps']:.0f}/s p99 "
            f"{outcome['p99_ms']:.1f} ms, rows {outcome['rows_recorded']} for {outcome['requests']} answers, "
            f"by node {outcome['by_node']}",
            flush=True,
        )
    return {
        "nodes": cluster.count,
        "through_haproxy": not direct,
        "runs": results,
        "median_rps": statistics.median(r["rps"] for r in results),
        "median_p50_ms": statistics.median(r["p50_ms"] for r in results),
        "median_p99_ms": statistics.median(r["p99_ms"] for r in results),
        "every_answer_recorded": all(r["every_answer_recorded"] for r in results),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", default="1,2,3", help="node counts to measure, e.g. 1,2,3")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checks-only", action="store_true")
    parser.add_argument(
        "--haproxy-threads", type=int, help="HAProxy's nbthread (default: its own, one per core)"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "multi-node.json")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install -y wrk", file=sys.stderr)
        return 2
    haproxy = ensure_haproxy()
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veto_multinode")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7")
    if not database_url.startswith("postgres"):
        print("the benchmark runs on PostgreSQL: set DATABASE_URL to a postgres:// URL", file=sys.stderr)
        return 2
    os.environ.setdefault("VETO_VAR_DIR", "/tmp/var-multinode")
    env = seeded_environment(database_url, redis_url)
    publish_rules_with_rate_limit(env)
    team = Team("demo", API_KEY, APPROVER_KEY, "alice", env["VETO_DEMO_PASSWORD"], database_url)
    work = Path(tempfile.mkdtemp(prefix="veto-multinode-"))
    version = subprocess.run([haproxy, "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    summary: dict[str, Any] = {
        "machine": machine() | {"haproxy": version},
        "connections": CONNECTIONS,
        "seconds_per_run": args.seconds,
        "runs_per_count": args.runs,
        "haproxy_threads": args.haproxy_threads or "HAProxy's default (one per core)",
        "throughput": [],
    }
    if not args.checks_only:
        for count in counts:
            with Cluster(env, count, work / f"bench-{count}", args.haproxy_threads) as cluster:
                if count == 1:
                    summary["throughput"].append(
                        throughput(
                            cluster,
                            seconds=args.seconds,
                            runs=args.runs,
                            database_url=database_url,
                            direct=True,
                        )
                    )
                summary["throughput"].append(
                    throughput(cluster, seconds=args.seconds, runs=args.runs, database_url=database_url)
                )
    checks_nodes = max([3, *counts])  # A, B and C of the long-poll check
    print(f"checks on {checks_nodes} nodes", flush=True)
    with Cluster({**env, **CHECK_NODE_ENV}, checks_nodes, work / "checks") as cluster:
        summary["checks"] = run_checks(cluster, team)
    ok = all(c["ok"] for c in summary["checks"].values()) and all(
        t["every_answer_recorded"] for t in summary["throughput"]
    )
    summary["ok"] = ok
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    print(f"\nraw results: {args.json}\n")
    print("| nodes | path | validate req/s | p50 ms | p99 ms | every answer recorded | spread over nodes |")
    print("|---:|---|---:|---:|---:|---|---|")
    for t in summary["throughput"]:
        spread = " / ".join(
            str(sum(r["by_node"].get(f"node{n}", 0) for r in t["runs"])) for n in range(1, t["nodes"] + 1)
        )
        path = "HAProxy" if t["through_haproxy"] else "direct (no HAProxy)"
        print(
            f"| {t['nodes']} | {path} | {t['median_rps']:.0f} | {t['median_p50_ms']:.1f} | "
            f"{t['median_p99_ms']:.1f} | {'yes' if t['every_answer_recorded'] else 'NO'} | "
            f"{spread if t['through_haproxy'] else '-'} |"
        )
    print("\n| check | holds | detail |\n|---|---|---|")
    for name, check in summary["checks"].items():
        detail = {k: v for k, v in check.items() if k not in ("ok", "problems")}
        print(f"| {name} | {'yes' if check['ok'] else 'NO'} | `{json.dumps(detail)}` |")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
