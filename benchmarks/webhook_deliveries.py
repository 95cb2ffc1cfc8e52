#!/usr/bin/env python
"""Webhook deliveries per second to a local receiver, and the delay from decision to delivery.

What it does (issue 13's benchmark; figures for README "Webhooks"; goal: 500 deliveries/s with
two workers, none lost or doubled):

1. Creates a fresh PostgreSQL database (DATABASE_URL, default .../veto_webhooks), migrates,
   seeds the demo team, key and rules, empties its Redis database (REDIS_URL, default db 12:
   the broker's queue must start empty), and creates one ``generic`` endpoint (events: deny)
   through ``webhooks.services.webhook_endpoint_create``, pointing at
2. a receiver in its own process (this file's ``receiver`` mode): asyncio, HTTP/1.1 keep-alive,
   records each POST's ``webhook-id``, its monotonic and wall receipt time and the raw request,
   and answers ``200`` with an empty body at once. Every signature is verified with the
   ``standardwebhooks`` package at the end, off the hot path.
3. Starts the production shape: the real server (``python -m veto_cloud.serve``, uvicorn, DEBUG
   off; its webhook sink sends one dispatch task per team), ``--workers`` Celery worker
   processes (``python -m celery -A veto_cloud worker --concurrency C --without-gossip
   --without-mingle --loglevel INFO``, prefork, as the Procfile) and beat (the sweep), on
   PostgreSQL and Redis, with ``VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS=1`` (the receiver is on
   127.0.0.1).
4. Phase **burst**: ``--decisions`` deny decisions written as fast as the writer takes them.
   ``--burst-via writer`` (default): a separate process writes them with the decision writer's
   own statement (``runtime.writer.insert_decisions``, ``--batch`` rows a commit, the writer's
   default batch) and announces each batch on the event path (``common.events.dispatch``, as the
   writer does after its commit), so the webhook sink of that process sends the dispatch task.
   ``--burst-via server``: POST /v1/tools/validate with a denied call through the real server,
   ``--burst-connections`` at once (closed loop; the load shares the cores with the drain).
   Measured at the receiver: deliveries/s overall (first write to last receipt), over the drain
   (first to last receipt) and in the steady part of the drain (the 10th to the 90th percentile
   receipt), and the time from the first write until the last one arrives.
5. Phase **steady**, for each ``--rates`` value: denied calls through the real server at that
   rate, open loop, for ``--steady-seconds``; latency = receipt wall time - the decision's
   ``created_at`` (one clock: same machine), p50/p95/p99.
6. Every phase: lost (deny decisions of the phase without a receipt), doubled (webhook-ids
   received more than once; decisions received under two webhook-ids), attempts per delivery
   from the database, CPU seconds of each process (server, each worker's tree, beat, receiver,
   writer, this process, Redis, PostgreSQL's live processes: all of its databases, so another
   helper's load shows there, and a backend that exited meanwhile does not) and of the
   machine, with the load average before and after. Over the run: the tasks the workers ran,
   from their logs (a deliver task beyond one per attempt found nothing to send).

``--worker-db-reuse-max N`` measures a proposal, not the shipped settings: the workers run on
the base settings plus ``CELERY_DB_REUSE_MAX = N`` (a settings module written into the run's own
folder), so Celery's Django fixup stops closing the database connections, and with them the
psycopg pool, around every task.

Usage:  DATABASE_URL=... REDIS_URL=... .venv/bin/python benchmarks/webhook_deliveries.py
            [--decisions 10000] [--burst-via writer|server] [--rates 50,200] [--steady-seconds 30]
            [--workers 2] [--worker-concurrency 1] [--worker-db-reuse-max N]
            [--phases burst,steady] [--profile DIR] [--label NAME] [--json PATH]
Needs:  PostgreSQL and Redis (the database is dropped and made again; the Redis db is flushed:
        give each its own). py-spy for --profile (pip install py-spy). The machine is shared:
        read the load average kept with the figures, and run each configuration twice.
Writes: benchmarks/results/webhook-deliveries-<date>-c<concurrency>[-<label>].json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_fanout import (  # noqa: E402
    machine_busy_seconds,
    process_tree_cpu_seconds,
    py_spy_path,
)
from validate_throughput import (  # noqa: E402
    API_KEY,
    free_port,
    machine,
    seeded_environment,
    start_server,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEAM = "demo"
GOAL_PER_SECOND = 500.0
HEADERS = {"X-Veto-API-Key": API_KEY, "Content-Type": "application/json"}
# Denied by the demo rules (a public bucket), whose deny rule has no rate_limits: event "deny".
DENIED = {
    "tool_name": "run_data_export",
    "arguments": {"bucket": "s3://public-dump", "rows": 10},
    "context": {"session_id": "webhook-bench", "agent_id": "bench-agent"},
}


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(math.ceil(fraction * len(ordered))) - 1))]


def summary_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 0.50) * 1000, 1),
        "p95_ms": round(percentile(values, 0.95) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "mean_ms": round(statistics.fmean(values) * 1000, 1),
    }


# --- the receiver (its own process) ----------------------------------------------------------------


def receiver_main(port: int, out: Path) -> None:
    """HTTP/1.1 keep-alive on 127.0.0.1:port. POST /hook: recorded, 200 at once. GET /stats:
    how many so far and when the last came. POST /dump: everything written to ``out``."""
    records: list[tuple[str, float, float, str, str, str]] = []
    last = [0.0, 0.0]  # monotonic, wall of the last receipt

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.buffer = bytearray()

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if len(self.buffer) < end + 4 + length:
                    return
                body = bytes(self.buffer[end + 4 : end + 4 + length])
                del self.buffer[: end + 4 + length]
                self.answer(lines[0].split(" ")[:2], headers, body)

        def answer(self, request: list[str], headers: dict[str, str], body: bytes) -> None:
            method, path = request
            if method == "POST" and path == "/hook":
                now_mono, now_wall = time.monotonic(), time.time()
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                records.append(
                    (
                        headers.get("webhook-id", ""),
                        now_mono,
                        now_wall,
                        headers.get("webhook-timestamp", ""),
                        headers.get("webhook-signature", ""),
                        body.decode("utf-8", errors="replace"),
                    )
                )
                last[0], last[1] = now_mono, now_wall
                return
            if path == "/stats":
                times = os.times()
                payload = json.dumps(
                    {
                        "count": len(records),
                        "last_mono": last[0],
                        "last_wall": last[1],
                        "cpu": times.user + times.system,
                    }
                ).encode()
            elif path == "/dump":
                out.write_text(json.dumps(records))
                payload = b'{"dumped": true}'
            else:
                payload = b"{}"
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(payload), payload)
            )

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Protocol, "127.0.0.1", port, backlog=512)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(serve())


def receiver_get(port: int, path: str, method: str = "GET") -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


# --- Django-side helpers (their own processes, on the benchmark's settings) -------------------------


def _django() -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def setup_main(url: str) -> None:
    """The endpoint, as an admin's API call makes it (its cursors at the team's heads)."""
    _django()
    from tenancy.actor import Actor
    from tenancy.models import Team
    from webhooks.services import webhook_endpoint_create

    team = Team.objects.get(slug=TEAM)
    created = webhook_endpoint_create(
        team=team,
        actor=Actor.process("benchmark"),
        values={"name": "benchmark receiver", "url": url, "format": "generic", "events": ["deny"]},
    )
    print(
        json.dumps(
            {"team_id": str(team.id), "endpoint_id": str(created.endpoint.id), "secret": created.secret}
        )
    )


def write_main(count: int, batch: int) -> None:
    """``count`` deny decisions, ``batch`` a commit, each batch announced as the writer does."""
    _django()
    import uuid

    from django.utils import timezone

    from audit.events import decision_events
    from audit.models import context_columns
    from common import events
    from runtime.writer import insert_decisions
    from tenancy.models import Team
    from webhooks import sink

    team = Team.objects.get(slug=TEAM)
    wanted = events.wanted()
    started = time.monotonic()
    written = 0
    while written < count:
        rows: list[dict[str, Any]] = []
        for _ in range(min(batch, count - written)):
            context = {"session_id": "webhook-burst", "agent_id": "bench-agent"}
            row: dict[str, Any] = {
                "id": uuid.uuid4(),
                "team_id": team.id,
                "tool_name": "run_data_export",
                "arguments": {"bucket": "s3://public-dump", "rows": 10},
                "context": context,
                "decision": "deny",
                "rule_id": "block-public-buckets",
                "rule_name": "block-public-buckets",
                "reason": "benchmark burst",
                "severity": "high",
                "mode": "deterministic",
                "enforcement": "strict",
                "source": "server",
                "latency_ms": 0.1,
                "rule_set_version": None,
                "approval_id": None,
                "api_key_id": None,
                "created_at": timezone.now(),
                "rules_hash": "",
            }
            row.update(context_columns(context))
            rows.append(row)
        insert_decisions(rows, [], numbered=True)
        events.dispatch([e for row in rows for e in decision_events(row) if e.type in wanted])
        written += len(rows)
    committed = time.monotonic()
    time.sleep(0.5)  # the sink's thread sends the dispatch task; then flush anything left
    sink.sender().flush()
    times = os.times()
    print(
        json.dumps(
            {
                "started_mono": started,
                "committed_mono": committed,
                "written": written,
                "cpu_seconds": round(times.user + times.system, 2),
            }
        )
    )


# --- this process: the orchestra ----------------------------------------------------------------------


class Processes:
    def __init__(self) -> None:
        self.named: dict[str, subprocess.Popen[bytes]] = {}

    def add(self, name: str, process: subprocess.Popen[bytes]) -> None:
        self.named[name] = process

    def cpu(self) -> dict[str, float]:
        sample = {name: process_tree_cpu_seconds(p.pid) for name, p in self.named.items()}
        sample["redis-server"] = sum(process_tree_cpu_seconds(pid) for pid in pids_named("redis-server"))
        sample["postgresql (all databases)"] = sum(
            postmaster_cpu_seconds(pid) for pid in pids_named("postgres", top=True)
        )
        times = os.times()
        sample["this load process"] = times.user + times.system
        return sample

    def stop(self) -> None:
        for process in reversed(list(self.named.values())):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.named.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def pids_named(name: str, *, top: bool = False) -> list[int]:
    """Processes whose command is ``name``; with ``top``, only those whose parent is not one
    (PostgreSQL's postmaster: its tree holds every backend)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if comm == name:
            found[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return [pid for pid, parent in found.items() if not top or parent not in found]


def postmaster_cpu_seconds(pid: int) -> float:
    """The postmaster's tree: its live backends, and (cutime, cstime) the ones it reaped, since a
    connection that closed meanwhile takes its CPU out of the live tree."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return process_tree_cpu_seconds(pid) + (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def cpu_delta(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, Any]:
    return {
        name: {
            "cpu_seconds": round(after[name] - before.get(name, 0.0), 2),
            "percent_of_one_core": round(100 * (after[name] - before.get(name, 0.0)) / wall, 1),
        }
        for name in after
    }


def start_celery(
    env: dict[str, str],
    folder: Path,
    workers: int,
    concurrency: int,
    processes: Processes,
    db_reuse_max: int | None,
) -> None:
    celery = [sys.executable, "-m", "celery", "-A", "veto_cloud"]
    worker_env = env
    if db_reuse_max is not None:
        # A proposal measured, not the shipped settings: the base settings plus
        # CELERY_DB_REUSE_MAX, in a module of the run's own folder, for the workers only.
        (folder / "webhook_bench_settings.py").write_text(
            "from veto_cloud.settings.base import *  # noqa: F401,F403\n"
            f"CELERY_DB_REUSE_MAX = {db_reuse_max}\n"
        )
        worker_env = dict(
            env,
            DJANGO_SETTINGS_MODULE="webhook_bench_settings",
            PYTHONPATH=os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p),
        )
    for n in range(workers):
        command = [
            *celery,
            "worker",
            "--concurrency",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
        ]
        command += ["--hostname", f"whbench{n}@%h", "--loglevel", "INFO"]
        log = (folder / f"worker-{n}.log").open("w")
        processes.add(
            f"worker-{n}",
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=worker_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
        )
    log = (folder / "beat.log").open("w")
    beat = [*celery, "beat", "--schedule", str(folder / "beat-schedule"), "--loglevel", "INFO"]
    processes.add(
        "beat",
        subprocess.Popen(
            beat, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        ),
    )
    # Ready once every worker says so in its log.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all("ready." in (folder / f"worker-{n}.log").read_text() for n in range(workers)):
            return
        time.sleep(0.2)
    raise SystemExit("the Celery workers did not start in 60 s: see " + str(folder))


def code_version() -> dict[str, Any]:
    """The commit the workers ran from, and the engine's files that differed from it (another
    session may be changing them while this runs): with a digest of their contents as run."""
    import hashlib

    def git(*command: str) -> str:
        result = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    engine = [
        "webhooks",
        "veto_cloud/celery.py",
        "veto_cloud/settings",
        "common/events.py",
        "runtime/writer.py",
    ]
    digest = hashlib.sha256()
    for path in sorted(
        p for name in engine for p in ([ROOT / name] if name.endswith(".py") else (ROOT / name).rglob("*.py"))
    ):
        if path.is_file() and "tests" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "engine_changes_not_committed": git("status", "--short", "--", *engine).splitlines(),
        "engine_files_sha256": digest.hexdigest()[:16],
    }


def worker_tasks(folder: Path, workers: int) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for n in range(workers):
        for line in (folder / f"worker-{n}.log").read_text().splitlines():
            if "] received" in line and "Task " in line:
                counts[line.split("Task ", 1)[1].split("[", 1)[0]] += 1
            elif "webhook.attempt " in line:
                counts["attempts (webhook.attempt lines)"] += 1
    return dict(counts)


def decisions_head(database_url: str, team_id: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT coalesce(max(sequence), 0) FROM audit_decisionrecord WHERE team_id = %s", (team_id,)
        ).fetchone()
        return int(row[0]) if row else 0


def phase_rows(database_url: str, team_id: str, after: int, upto: int) -> dict[str, Any]:
    """The phase's deny decisions (id -> created_at epoch) and its deliveries' attempts."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        decisions = {
            str(i): c.timestamp()
            for i, c in conn.execute(
                "SELECT id, created_at FROM audit_decisionrecord WHERE team_id = %s AND decision = 'deny' "
                "AND sequence > %s AND sequence <= %s",
                (team_id, after, upto),
            ).fetchall()
        }
        keys = [f"decisions:{s}:deny" for s in range(after + 1, upto + 1)]
        deliveries = conn.execute(
            "SELECT d.status, d.attempt_count, "
            "(SELECT count(*) FROM webhooks_webhookattempt a WHERE a.delivery_id = d.id), "
            "extract(epoch FROM d.created_at) FROM webhooks_webhookdelivery d WHERE d.source_key = ANY(%s)",
            (keys,),
        ).fetchall()
    statuses = Counter(status for status, *_ in deliveries)
    attempts = [n for _, _, n, _ in deliveries]
    return {
        "decisions": decisions,
        "deliveries": {
            "rows": len(deliveries),
            "by_status": dict(statuses),
            "attempts_total": sum(attempts),
            "attempts_per_delivery_mean": round(statistics.fmean(attempts), 3) if attempts else None,
            "attempts_per_delivery_max": max(attempts) if attempts else None,
            "deliveries_with_more_than_one_attempt": sum(1 for n in attempts if n > 1),
        },
        "delivery_created_epochs": sorted(float(c) for *_, c in deliveries),
    }


def wait_for_receipts(port: int, target: int, *, quiet: float, limit: float) -> dict[str, Any]:
    """Until the receiver holds ``target`` receipts (and nothing came for a moment), or nothing
    has come for ``quiet`` seconds, or ``limit`` seconds passed."""
    started = time.monotonic()
    last_count, last_change = -1, time.monotonic()
    while True:
        stats = receiver_get(port, "/stats")
        now = time.monotonic()
        if stats["count"] != last_count:
            last_count, last_change = stats["count"], now
        if stats["count"] >= target and now - last_change >= 1.0:
            break
        if now - last_change >= quiet or now - started >= limit:
            break
        time.sleep(0.2)
    return stats


async def post_decisions(
    base: str, *, count: int, rate: float | None, connections: int
) -> list[dict[str, Any]]:
    """``count`` denied calls: open loop at ``rate`` per second, or closed loop over
    ``connections`` when ``rate`` is None (as fast as the server takes them)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max(connections, 64), keepalive_timeout=4)
    results: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(index: int) -> None:
            sent = time.monotonic()
            result: dict[str, Any] = {"index": index, "sent": sent}
            try:
                async with session.post(
                    f"{base}/v1/tools/validate", json=DENIED, headers=HEADERS
                ) as response:
                    payload = await response.json(content_type=None)
                    result["status"] = response.status
                    result["decision"] = payload.get("decision")
                    result["decision_id"] = (payload.get("metadata") or {}).get("decision_id")
            except Exception as exc:  # noqa: BLE001 - counted
                result["error"] = f"{type(exc).__name__}: {exc}"
            result["answered"] = time.monotonic()
            results.append(result)

        if rate is None:
            queue = iter(range(count))

            async def lane() -> None:
                for index in queue:
                    await one(index)

            await asyncio.gather(*(lane() for _ in range(connections)))
        else:
            start = time.monotonic() + 0.1
            tasks = []
            for index in range(count):
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(index)))
            await asyncio.gather(*tasks)
    return results


def start_profiles(
    folder: Path | None, processes: Processes, seconds: float, tag: str
) -> list[subprocess.Popen[bytes]]:
    if folder is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [py_spy_path(), "record", "--pid", str(p.pid), "--subprocesses", "--format", "raw"]
            + ["--rate", "100", "--duration", str(int(seconds))]
            + ["--output", str(folder / f"{tag}-{name}.txt"), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, p in processes.named.items()
        if name.startswith("worker") or name == "server"
    ]


def run_phase(
    name: str,
    args: argparse.Namespace,
    ctx: dict[str, Any],
    processes: Processes,
    *,
    rate: float | None = None,
) -> dict[str, Any]:
    database_url, team_id, port, base = ctx["database_url"], ctx["team_id"], ctx["port"], ctx["base"]
    head_before = decisions_head(database_url, team_id)
    received_before = receiver_get(port, "/stats")["count"]
    load_before = load_average()
    cpu_before = processes.cpu()
    cpu_before["receiver"] = ctx.get("receiver_cpu", 0.0)
    machine_before = machine_busy_seconds()
    started_mono, started_wall = time.monotonic(), time.time()
    profiles = start_profiles(args.profile, processes, args.profile_seconds, name)
    info: dict[str, Any] = {"phase": name}
    if name == "burst" and args.burst_via == "writer":
        output = subprocess.run(
            [sys.executable, __file__, "write", "--count", str(args.decisions), "--batch", str(args.batch)],
            cwd=ROOT,
            env=ctx["env"],
            capture_output=True,
            text=True,
            check=True,
        )
        written = json.loads(output.stdout.strip().splitlines()[-1])
        seconds = written["committed_mono"] - written["started_mono"]
        info["writer"] = {
            "how": f"runtime.writer.insert_decisions, {args.batch} rows a commit, each batch announced by "
            "common.events.dispatch (its own process)",
            "decisions": written["written"],
            "write_seconds": round(seconds, 3),
            "decisions_per_second": round(written["written"] / seconds, 1),
            "cpu_seconds": written["cpu_seconds"],
        }
        writes_started, writes_done = written["started_mono"], written["committed_mono"]
        expected = written["written"]
    else:
        count = args.decisions if rate is None else int(round(rate * args.steady_seconds))
        writes_started = time.monotonic()
        calls = asyncio.run(post_decisions(base, count=count, rate=rate, connections=args.burst_connections))
        writes_done = time.monotonic()
        ok = [c for c in calls if c.get("status") == 200 and c.get("decision") == "deny"]
        late = [c["sent"] - (writes_started + 0.1 + c["index"] / rate) for c in calls] if rate else []
        how = f"open loop at {rate:g}/s" if rate else f"closed loop over {args.burst_connections} connections"
        info["writer"] = {
            "how": f"POST /v1/tools/validate through the real server (a denied call), {how}",
            "calls": len(calls),
            "answered_deny": len(ok),
            "failed": len(calls) - len(ok),
            "failures": sorted(
                {
                    c.get("error") or f"HTTP {c.get('status')} {c.get('decision')}"
                    for c in calls
                    if c not in ok
                }
            )[:5],
            "write_seconds": round(writes_done - writes_started, 3),
            "decisions_per_second": round(len(calls) / (writes_done - writes_started), 1),
            "validate_latency": summary_ms([c["answered"] - c["sent"] for c in ok]),
            "send_lateness": summary_ms(late) if late else None,
        }
        expected = len(ok)
    stats = wait_for_receipts(
        port, received_before + expected, quiet=args.quiet_seconds, limit=args.drain_max
    )
    ended_mono = time.monotonic()
    for profiler in profiles:
        profiler.wait(timeout=args.profile_seconds + 30)
    wall = ended_mono - started_mono
    cpu_after = processes.cpu()
    cpu_after["receiver"] = stats["cpu"]
    ctx["receiver_cpu"] = stats["cpu"]
    machine_after = machine_busy_seconds()
    time.sleep(1.0)  # the attempts' rows of the last deliveries commit after their answer
    head_after = decisions_head(database_url, team_id)
    info.update(
        {
            "started_wall": started_wall,
            "started_mono": started_mono,
            "writes_started_mono": writes_started,
            "writes_done_mono": writes_done,
            "ended_mono": ended_mono,
            "received_from": received_before,
            "received_upto": stats["count"],
            "sequences": [head_before, head_after],
            "rows": phase_rows(database_url, team_id, head_before, head_after),
            "wall_seconds": round(wall, 2),
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "cpu": cpu_delta(cpu_before, cpu_after, wall),
            "machine_busy_percent_of_all_cores": round(
                100
                * (machine_after[0] - machine_before[0])
                / max(1e-9, machine_after[1] - machine_before[1]),
                1,
            ),
        }
    )
    print(
        f"{name}: {expected} decisions, receiver {stats['count'] - received_before} in {wall:.1f} s, "
        f"load {load_before} -> {info['load_average_after']}",
        flush=True,
    )
    return info


def analyse(phase: dict[str, Any], records: list[list[Any]], secret: str) -> dict[str, Any]:
    """Receipts of the phase (by the decision each names) against its deny decisions."""
    decisions: dict[str, float] = phase["rows"]["decisions"]
    # Every receipt whose body names one of the phase's decisions, also one that came after the
    # phase stopped waiting (it counts, late, rather than as lost).
    mine = [r for r in records if r[6] in decisions]
    ids = Counter(r[0] for r in mine)
    by_decision: dict[str, list[list[Any]]] = {}
    for record in mine:
        by_decision.setdefault(record[6], []).append(record)
    firsts = {d: min(rs, key=lambda r: r[1]) for d, rs in by_decision.items()}
    receipts_mono = sorted(r[1] for r in firsts.values())
    latency = [firsts[d][2] - decisions[d] for d in firsts]
    out: dict[str, Any] = {
        "deny_decisions": len(decisions),
        "received_requests": len(mine),
        "received_decisions": len(by_decision),
        "lost": len(decisions) - len(by_decision),
        "doubled_webhook_ids": sum(1 for n in ids.values() if n > 1),
        "decisions_under_two_webhook_ids": sum(
            1 for rs in by_decision.values() if len({r[0] for r in rs}) > 1
        ),
        "received_while_waiting": phase["received_upto"] - phase["received_from"],
        "received_after_the_wait": sum(1 for r in mine if r[1] > phase["ended_mono"]),
        "latency_created_at_to_receipt": summary_ms(latency),
    }
    if receipts_mono:
        n = len(receipts_mono)
        first, last = receipts_mono[0], receipts_mono[-1]
        lo, hi = receipts_mono[int(0.1 * (n - 1))], receipts_mono[int(0.9 * (n - 1))]
        out["throughput"] = {
            "overall_per_second": round(n / max(1e-9, last - phase["writes_started_mono"]), 1),
            "drain_per_second": round(n / max(1e-9, last - first), 1) if n > 1 else None,
            "steady_p10_p90_per_second": round((0.8 * (n - 1)) / max(1e-9, hi - lo), 1) if n > 10 else None,
            "first_receipt_after_first_write_s": round(first - phase["writes_started_mono"], 3),
            "last_receipt_after_first_write_s": round(last - phase["writes_started_mono"], 3),
            "last_receipt_after_last_write_s": round(last - phase["writes_done_mono"], 3),
            "per_second_histogram": per_second(receipts_mono, phase["writes_started_mono"]),
        }
    created = phase["rows"].pop("delivery_created_epochs")
    if created:
        # When dispatch made the delivery rows, against the first write (wall clock).
        writes_wall = phase["started_wall"] + (phase["writes_started_mono"] - phase["started_mono"])
        out["dispatch"] = {
            "last_delivery_row_after_first_write_s": round(created[-1] - writes_wall, 3),
            "delivery_rows_per_second": round(len(created) / max(1e-9, created[-1] - created[0]), 1)
            if len(created) > 1
            else None,
        }
    if secret:
        out["signatures"] = verify(mine, secret)
    phase["rows"].pop("decisions")
    return out


def per_second(receipts: list[float], origin: float) -> list[int]:
    counts: Counter[int] = Counter(int(t - origin) for t in receipts)
    return [counts.get(s, 0) for s in range(max(counts) + 1)] if counts else []


def verify(records: list[list[Any]], secret: str) -> dict[str, int]:
    """Every request verified with the standardwebhooks package (off the hot path), each as of
    its own receipt: the package refuses a timestamp more than five minutes from "now", and a
    run lasts longer than that, so its clock is set to the receipt's wall time."""
    from unittest import mock

    from standardwebhooks import webhooks as package

    class AtReceipt(datetime.datetime):
        at = datetime.datetime.now(datetime.UTC)

        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> AtReceipt:  # type: ignore[override]
            return cls.at  # type: ignore[return-value]

    hook = package.Webhook(secret)
    good = bad = 0
    with mock.patch.object(package, "datetime", AtReceipt):
        for webhook_id, _, wall, timestamp, signature, body, _ in records:
            AtReceipt.at = datetime.datetime.fromtimestamp(wall, datetime.UTC)
            headers = {
                "webhook-id": webhook_id,
                "webhook-timestamp": timestamp,
                "webhook-signature": signature,
            }
            try:
                hook.verify(body, headers, json_parse=False)
                good += 1
            except package.WebhookVerificationError:
                bad += 1
    return {"verified": good, "refused": bad}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode")
    receiver = sub.add_parser("receiver")
    receiver.add_argument("--port", type=int, required=True)
    receiver.add_argument("--out", type=Path, required=True)
    setup = sub.add_parser("setup")
    setup.add_argument("--url", required=True)
    write = sub.add_parser("write")
    write.add_argument("--count", type=int, required=True)
    write.add_argument("--batch", type=int, required=True)
    parser.add_argument("--decisions", type=int, default=10_000, help="deny decisions of the burst")
    parser.add_argument("--burst-via", choices=("writer", "server"), default="writer")
    parser.add_argument(
        "--batch", type=int, default=256, help="rows a commit (the writer's default max batch)"
    )
    parser.add_argument("--burst-connections", type=int, default=32, help="--burst-via server: calls at once")
    parser.add_argument(
        "--rates", default="50,200", help="steady phases: decisions per second, comma-separated"
    )
    parser.add_argument("--steady-seconds", type=float, default=30.0)
    parser.add_argument("--phases", default="burst,steady")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--worker-concurrency", type=int, default=1, help="prefork children per worker")
    parser.add_argument(
        "--worker-db-reuse-max",
        type=int,
        help="a proposal, not the shipped settings: CELERY_DB_REUSE_MAX for the workers (Celery's Django "
        "fixup then closes the database connections, and the psycopg pool, every 2N tasks instead of "
        "around every task)",
    )
    parser.add_argument("--server-workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument(
        "--quiet-seconds",
        type=float,
        default=15.0,
        help="stop waiting after this long without a receipt (more than the sweep's period)",
    )
    parser.add_argument("--drain-max", type=float, default=400.0)
    parser.add_argument("--no-verify", action="store_true", help="skip the signature check at the end")
    parser.add_argument("--profile", type=Path, help="py-spy the workers and the server into this folder")
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument("--label", default="")
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.mode == "receiver":
        receiver_main(args.port, args.out)
        return 0
    if args.mode == "setup":
        setup_main(args.url)
        return 0
    if args.mode == "write":
        write_main(args.count, args.batch)
        return 0
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veto_webhooks")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12")
    if not database_url.startswith("postgres") or not redis_url.startswith("redis"):
        print("the benchmark runs on PostgreSQL and Redis: set DATABASE_URL and REDIS_URL", file=sys.stderr)
        return 2
    if args.profile is not None and not Path(py_spy_path()).is_file():
        print(f"--profile needs py-spy (pip install py-spy): not at {py_spy_path()}", file=sys.stderr)
        return 2
    started_at = datetime.datetime.now(datetime.UTC)
    code = code_version()
    load_at_start = load_average()
    uptime_at_start = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    env = seeded_environment(database_url, redis_url)
    env.setdefault("VETO_VAR_DIR", "/tmp/var-webhook-bench")
    env["VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "1"
    env["LOG_LEVEL"] = "INFO"  # as production: the worker logs each attempt
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # the broker's queue starts empty
    folder = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    processes = Processes()
    ctx: dict[str, Any] = {"env": env, "database_url": database_url}
    phases: list[dict[str, Any]] = []
    try:
        port = free_port()
        dump = folder / "receipts.json"
        receiver = subprocess.Popen(
            [sys.executable, __file__, "receiver", "--port", str(port), "--out", str(dump)],
            cwd=ROOT,
            start_new_session=True,
        )
        processes.add("receiver", receiver)
        for _ in range(100):
            try:
                receiver_get(port, "/stats")
                break
            except OSError:
                time.sleep(0.05)
        made = subprocess.run(
            [sys.executable, __file__, "setup", "--url", f"http://127.0.0.1:{port}/hook"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        endpoint = json.loads(made.stdout.strip().splitlines()[-1])
        server_port = free_port()
        base = f"http://127.0.0.1:{server_port}"
        server_env = dict(env, PORT=str(server_port), WEB_CONCURRENCY=str(args.server_workers))
        server, _ = start_server([sys.executable, "-m", "veto_cloud.serve"], server_env, base)
        processes.add("server", server)
        start_celery(env, folder, args.workers, args.worker_concurrency, processes, args.worker_db_reuse_max)
        ctx.update(team_id=endpoint["team_id"], port=port, base=base)
        print(
            f"receiver :{port}, server {base}, {args.workers} worker(s) x concurrency {args.worker_concurrency}, "
            f"beat; logs in {folder}",
            flush=True,
        )
        time.sleep(2.0)  # the workers' first sweep
        wanted = [p.strip() for p in args.phases.split(",") if p.strip()]
        if "burst" in wanted:
            phases.append(run_phase("burst", args, ctx, processes))
        if "steady" in wanted:
            for rate in [float(r) for r in args.rates.split(",") if r.strip()]:
                phases.append(run_phase(f"steady-{rate:g}", args, ctx, processes, rate=rate))
        receiver_get(port, "/dump", method="POST")
        records = json.loads(dump.read_text())
        tasks_run = worker_tasks(folder, args.workers)
        worker_errors = {
            name: [
                line
                for line in (folder / f"{name}.log").read_text().splitlines()
                if "ERROR" in line or "Traceback" in line
            ][-5:]
            for name in [f"worker-{n}" for n in range(args.workers)] + ["beat"]
        }
    finally:
        processes.stop()
    for record in records:  # the decision each receipt names (parsed once, off the hot path)
        record.append(((json.loads(record[5]).get("data") or {}).get("decision") or {}).get("decision_id"))
    results = []
    for phase in phases:
        figures = analyse(phase, records, "" if args.no_verify else endpoint["secret"])
        results.append({**phase, "figures": figures})
    return report(
        args, results, started_at, load_at_start, uptime_at_start, worker_errors, tasks_run, folder, code
    )


def report(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    started_at: datetime.datetime,
    load_at_start: list[float],
    uptime_at_start: str,
    worker_errors: dict[str, list[str]],
    tasks_run: dict[str, int],
    folder: Path,
    code: dict[str, Any],
) -> int:
    burst = next((r for r in results if r["phase"] == "burst"), None)
    clean = all(
        r["figures"]["lost"] == 0
        and r["figures"]["doubled_webhook_ids"] == 0
        and r["figures"]["decisions_under_two_webhook_ids"] == 0
        and r["figures"].get("signatures", {}).get("refused", 0) == 0
        for r in results
    )
    rate = (burst or {}).get("figures", {}).get("throughput", {}).get("drain_per_second") or 0.0
    goal_met = bool(burst) and clean and rate >= GOAL_PER_SECOND
    summary = {
        "benchmark": "webhook_deliveries",
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": {
            **machine(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": load_average(),
            "uptime_at_start": uptime_at_start,
        },
        "setup": {
            "label": args.label,
            "code": code,
            "workers": args.workers,
            "worker_concurrency": args.worker_concurrency,
            "worker_db_reuse_max": args.worker_db_reuse_max,
            "worker_command": "python -m celery -A veto_cloud worker --concurrency C --without-gossip "
            "--without-mingle --loglevel INFO (prefork)",
            "beat": True,
            "server": f"python -m veto_cloud.serve, {args.server_workers} uvicorn worker(s), DEBUG off",
            "endpoint": "one generic endpoint (events: deny), Standard Webhooks signed; receiver on 127.0.0.1 "
            "(its own process, HTTP/1.1 keep-alive, 200 at once)",
            "burst_via": args.burst_via,
            "decisions": args.decisions,
            "rates": args.rates,
            "steady_seconds": args.steady_seconds,
            "profiled_with_py_spy": str(args.profile) if args.profile else None,
            "logs": str(folder),
        },
        "goal": {
            "drain_per_second_at_least": GOAL_PER_SECOND,
            "none_lost_or_doubled_all_signatures_verify": clean,
        },
        "goal_met": goal_met,
        "phases": results,
        # From the workers' INFO logs, over the whole run: a deliver task beyond one per attempt
        # found its delivery sent or claimed already (a duplicate, e.g. from the sweep).
        "tasks_run": tasks_run,
        "worker_log_errors": worker_errors,
    }
    date = started_at.strftime("%Y-%m-%d")
    label = f"-{args.label}" if args.label else ""
    path = args.json or RESULTS / f"webhook-deliveries-{date}-c{args.worker_concurrency}{label}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")

    print()
    print(
        "| phase | decisions | drain/s (p10-p90) | last receipt after first write "
        "| p50 / p95 / p99 ms created_at -> receipt | lost | doubled | attempts/delivery |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for r in results:
        f, t = r["figures"], r["figures"].get("throughput", {})
        lat = f["latency_created_at_to_receipt"]
        print(
            f"| {r['phase']} | {f['deny_decisions']} | {t.get('drain_per_second')} "
            f"({t.get('steady_p10_p90_per_second')}) | {t.get('last_receipt_after_first_write_s')} s "
            f"| {lat.get('p50_ms')} / {lat.get('p95_ms')} / {lat.get('p99_ms')} | {f['lost']} "
            f"| {f['doubled_webhook_ids']} | {r['rows']['deliveries']['attempts_per_delivery_mean']} |"
        )
    for r in results:
        cpu = ", ".join(f"{name} {v['cpu_seconds']} s" for name, v in r["cpu"].items())
        print(
            f"{r['phase']}: cpu {cpu}; machine {r['machine_busy_percent_of_all_cores']} %; "
            f"load {r['load_average_before']} -> {r['load_average_after']}"
        )
        if "signatures" in r["figures"]:
            print(f"  signatures: {r['figures']['signatures']}")
    print(f"tasks run: {tasks_run}")
    print(f"goal ({GOAL_PER_SECOND:.0f}/s drain, none lost or doubled): {'met' if goal_met else 'NOT met'}")
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0 if goal_met else 1


if __name__ == "__main__":
    sys.exit(main())
