#!/usr/bin/env python
"""Memory of one web process after 1,000,000 decisions, and with 5,000 long-polls held at once.

What it does (issue 14, "How cost grows"; figures for the README "Performance" section):

1. Creates a fresh PostgreSQL database (DATABASE_URL, default .../veto_memory), migrates, seeds
   the demo team, key and rule set, and starts the real server as production does
   (``python -m veto_cloud.serve``, DEBUG off, PostgreSQL and Redis) with WEB_CONCURRENCY=1, so
   one process serves everything. That process is found by the listening socket it holds (with
   one worker uvicorn serves in the process ``serve`` execs; with more it forks, and this
   benchmark refuses to guess which one to watch).
2. Decisions: drives POST /v1/tools/validate with wrk (32 connections, validate_throughput's
   mix: 80 % allow, 10 % deny, 10 % require_approval) in chunks until the decision rows counted
   in PostgreSQL reach each step (every --step up to --decisions), and reads the server's memory
   at start, after a warm-up and at each step: VmRSS and VmHWM (/proc/PID/status) and USS (the
   Private_* lines of /proc/PID/smaps_rollup: what the process alone holds; on a shared machine
   it moves when other Python processes map the same libraries, so RssAnon, the heap and
   stacks, is the steadier figure of what the process allocated). A straight line
   fitted to the steps after the first says whether memory is flat or grows per decision. The
   rows added must equal the answers wrk counted (up to one in-flight request per connection
   per chunk recorded but not counted).
3. Long-polls: raises --long-polls approvals through validate (a PII export, which the demo
   rules send to approval), then holds GET /v1/approvals/{id}?wait=60 open for every one of
   them at once (aiohttp, one connection each, opened at --ramp per second; 0 opens them in one
   burst), until the server's own /metrics gauge (veto_long_polls_held) counts them all. Memory
   while they are held, less memory before, is the cost per long-poll. Then all but --timeouts
   are resolved (POST .../resolve as alice); those answer "approved" (a poller whose 60 s end
   first polls again, as the SDK does), the rest "pending" when their 60 s are up; every poller
   must get its answer. Memory is read again after all are answered and the connections closed.

File-descriptor limits: this process raises its soft RLIMIT_NOFILE to the hard limit (the
clients need one socket per long-poll); the server inherits it, and its own limit is read back
from /proc/PID/limits and recorded.

Usage:  .venv/bin/python benchmarks/web_memory.py                 # 1,000,000 decisions, 5,000 long-polls
        .venv/bin/python benchmarks/web_memory.py --quick         # 100,000 decisions, 500 long-polls
        .venv/bin/python benchmarks/web_memory.py --decisions 50000 --step 10000 --long-polls 200
Needs:  wrk, PostgreSQL and Redis reachable via DATABASE_URL / REDIS_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from approval_pollers import HEADERS, raise_approvals  # noqa: E402
from validate_throughput import (  # noqa: E402
    API_KEY,
    APPROVER_KEY,
    CONNECTIONS,
    ROOT,
    VALIDATE_BODIES,
    decision_count,
    lua_for,
    machine,
    run_wrk,
    seeded_environment,
    start_server,
    stop_server,
)

METRICS_TOKEN = "web-memory-benchmark-metrics-token"
WAIT_SECONDS = 60
MAX_CHUNK_SECONDS = 30
WARM_UP_APPROVALS = 20


# --- The process to watch, and what it holds --------------------------------------------------


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name (field 2) may hold spaces; the parent pid follows its ")".
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [root], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def serving_pid(root: int, port: int) -> int:
    """The process under ``root`` that holds the listening socket on ``port`` (the uvicorn
    worker); with a supervisor and several workers that share it, there is no one to watch."""
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    holders = []
    for pid in _descendants(root):
        try:
            fds = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        except OSError:
            continue
        if fds & inodes:
            holders.append(pid)
    workers = [pid for pid in holders if pid != root] or holders
    if len(workers) != 1:
        sys.exit(f"expected one serving process under {root} on port {port}, found {holders}")
    return workers[0]


def memory(pid: int) -> dict[str, int]:
    """The process's memory now, in KiB, with its thread and file-descriptor counts."""
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        status[name] = value.split()[0] if value.split() else ""
    rollup = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, value = line.partition(":")
        rollup[name] = int(value.split()[0])
    return {
        "rss_kib": int(status["VmRSS"]),
        "hwm_kib": int(status["VmHWM"]),
        "rss_anon_kib": int(status["RssAnon"]),
        "rss_file_kib": int(status["RssFile"]),
        "uss_kib": sum(value for name, value in rollup.items() if name.startswith("Private_")),
        "pss_kib": rollup["Pss"],
        "threads": int(status["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def open_files_limit(pid: int) -> dict[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return {"soft": soft, "hard": hard}
    return {}


def raise_open_files_limit(needed: int) -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} < {needed} needed: raise it (ulimit -Hn) first")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return {"was_soft": soft, "soft": hard, "hard": hard}


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


# --- 1. Decisions ---------------------------------------------------------------------------


def line_fit(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two points)."""
    if len(xs) < 2:
        return 0.0
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0


def drive_decisions(
    *, base: str, database_url: str, pid: int, script: Path, total: int, step: int, sample: dict
) -> dict:
    url = f"{base}/v1/tools/validate"
    steps: list[dict] = []
    chunks: list[dict] = []
    rows_at_start = decision_count(database_url)
    rate = 1000.0
    started = time.monotonic()
    for target in range(step, total + 1, step):
        while (count := decision_count(database_url)) < target:
            seconds = max(1, min(MAX_CHUNK_SECONDS, math.ceil((target - count) / rate)))
            outcome = run_wrk(url, seconds, script)
            rate = max(100.0, outcome["rps"])
            chunks.append(outcome)
        time.sleep(0.5)  # let the last in-flight commits land before counting
        row: dict = {
            "decisions": decision_count(database_url),
            "elapsed_s": round(time.monotonic() - started, 1),
            "load_average": load_average(),
            **memory(pid),
        }
        steps.append(row)
        print(
            f"  {row['decisions']:>9,} decisions: RSS {mib(row['rss_kib'])} MiB, HWM {mib(row['hwm_kib'])} MiB, "
            f"USS {mib(row['uss_kib'])} MiB ({chunks[-1]['rps'] if chunks else 0:.0f}/s, load {row['load_average'][0]})",
            flush=True,
        )
    rows = decision_count(database_url) - rows_at_start
    answered = sum(chunk["requests"] for chunk in chunks)
    errors = sum(chunk["socket_errors"] + chunk["non_2xx"] for chunk in chunks)

    # The first step still carries the warm-up's allocations settling (caches, pools, arenas);
    # the line through the others is the steady-state growth per decision.
    fitted = steps[1:] if len(steps) > 2 else steps
    xs = [float(row["decisions"]) for row in fitted]
    slopes = {
        key: line_fit(xs, [float(row[key]) * 1024 for row in fitted])
        for key in ("rss_kib", "rss_anon_kib", "uss_kib")
    }
    per_step_mib = slopes["rss_kib"] * step / 1024 / 1024
    return {
        "steps": steps,
        "chunks": len(chunks),
        "median_rps": statistics.median(chunk["rps"] for chunk in chunks),
        "median_p99_ms": statistics.median(chunk["p99_ms"] for chunk in chunks),
        "answered": answered,
        "rows_recorded": rows,
        "errors": errors,
        # wrk does not count a request still in flight when a chunk ends; the server records it.
        "every_answer_recorded": errors == 0 and answered <= rows <= answered + CONNECTIONS * len(chunks),
        "growth_bytes_per_decision": {key.removesuffix("_kib"): round(v, 2) for key, v in slopes.items()},
        "rss_growth_mib_per_step_fitted": round(per_step_mib, 2),
        "rss_growth_mib_first_to_last_step": round((steps[-1]["rss_kib"] - steps[0]["rss_kib"]) / 1024, 1),
        "wall_s": round(time.monotonic() - started, 1),
        **sample,
    }


# --- 2. Long-polls --------------------------------------------------------------------------


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=True),
        timeout=aiohttp.ClientTimeout(total=WAIT_SECONDS + 60),
    )


async def long_polls_held(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    ) as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith('veto_long_polls_held{kind="approval"}'):
            return int(float(line.split()[-1]))
    return 0


async def hold_long_polls(base: str, pid: int, count: int, timeouts: int, ramp: int) -> dict:
    async with _session() as session:
        ids = await raise_approvals(session, base, count + WARM_UP_APPROVALS)
        # A first resolve loads Django's stack (DRF, the URL resolver, the resolve service) and a
        # first wake the waiters' paths: warm them, so "before" is not missing what they load.
        warm_ids, ids = ids[:WARM_UP_APPROVALS], ids[WARM_UP_APPROVALS:]
        warm_polls = [
            asyncio.create_task(session.get(f"{base}/v1/approvals/{i}?wait={WAIT_SECONDS}", headers=HEADERS))
            for i in warm_ids
        ]
        await asyncio.sleep(1.0)
        for approval_id in warm_ids:
            async with session.post(
                f"{base}/v1/approvals/{approval_id}/resolve",
                json={"action": "approve", "resolvedBy": "alice"},
                headers={**HEADERS, "X-Veto-API-Key": APPROVER_KEY},
            ) as response:
                assert response.status == 200, await response.text()
        for response in await asyncio.gather(*warm_polls):
            assert (await response.json())["status"] == "approved"
            response.release()
    await asyncio.sleep(6.0)  # past the keep-alive timeout: the warm-up's connections are gone
    before = memory(pid)
    print(
        f"  {count} approvals raised: RSS {mib(before['rss_kib'])} MiB, USS {mib(before['uss_kib'])} MiB",
        flush=True,
    )

    answers: dict[str, tuple[int, str | None, float]] = {}
    errors: list[str] = []
    connect_started = time.monotonic()

    to_time_out = set(ids[count - timeouts :])
    repolls = 0

    async def poller(session: aiohttp.ClientSession, approval_id: str) -> None:
        # As the SDK does, an approval still pending when its wait ends is polled again; those
        # left to time out answer "pending" once, after their first 60 s.
        nonlocal repolls
        started = time.monotonic()
        try:
            while True:
                async with session.get(
                    f"{base}/v1/approvals/{approval_id}?wait={WAIT_SECONDS}", headers=HEADERS
                ) as response:
                    body = await response.json()
                    answers[approval_id] = (response.status, body.get("status"), time.monotonic() - started)
                if approval_id in to_time_out or answers[approval_id][:2] != (200, "pending"):
                    return
                repolls += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(repr(exc))

    pollers_session, control = _session(), _session()
    try:
        tasks = []
        for start in range(0, len(ids), max(1, ramp // 10) if ramp else len(ids)):
            batch = ids[start : start + (max(1, ramp // 10) if ramp else len(ids))]
            tasks += [asyncio.create_task(poller(pollers_session, approval_id)) for approval_id in batch]
            if ramp:
                await asyncio.sleep(0.1)
        held = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not errors:
            held = await long_polls_held(control, base)
            if held >= count:
                break
            await asyncio.sleep(0.25)
        all_held_after = time.monotonic() - connect_started
        print(f"  {held}/{count} long-polls held after {all_held_after:.1f} s", flush=True)
        await asyncio.sleep(2.0)
        samples = []
        for _ in range(3):
            samples.append(memory(pid))
            await asyncio.sleep(1.0)
        during = max(samples, key=lambda sample: sample["rss_kib"])
        held_confirmed = await long_polls_held(control, base)
        print(
            f"  while held: RSS {mib(during['rss_kib'])} MiB, USS {mib(during['uss_kib'])} MiB, "
            f"{during['fds']} fds, {during['threads']} threads",
            flush=True,
        )

        # Resolve all but the last ``timeouts``; those wait out their 60 s and answer "pending".
        to_resolve = ids[: count - timeouts]
        semaphore = asyncio.Semaphore(10)
        resolve_failures: list[str] = []

        async def resolve(approval_id: str) -> None:
            async with semaphore:
                async with control.post(
                    f"{base}/v1/approvals/{approval_id}/resolve",
                    json={"action": "approve", "resolvedBy": "alice"},
                    headers={**HEADERS, "X-Veto-API-Key": APPROVER_KEY},
                ) as response:
                    await response.read()
                    if response.status != 200:
                        resolve_failures.append(f"{response.status}")

        resolve_started = time.monotonic()
        await asyncio.gather(*(resolve(approval_id) for approval_id in to_resolve))
        resolve_seconds = time.monotonic() - resolve_started
        peak_while_resolving = memory(pid)
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_SECONDS + 60)
    finally:
        await pollers_session.close()
        await control.close()
    answered_at = memory(pid)
    await asyncio.sleep(6.0)  # past the keep-alive timeout: every connection's state is gone
    after = memory(pid)
    print(
        f"  released: RSS {mib(after['rss_kib'])} MiB, USS {mib(after['uss_kib'])} MiB, {after['fds']} fds",
        flush=True,
    )

    approved_right = sum(1 for i in to_resolve if answers.get(i, (0, None, 0))[:2] == (200, "approved"))
    timed_out_right = [
        answers[i][2] for i in to_time_out if i in answers and answers[i][:2] == (200, "pending")
    ]
    return {
        "long_polls": count,
        "opened_per_second": ramp or "all at once",
        "held_per_server_metrics": held_confirmed,
        "all_held_after_s": round(all_held_after, 2),
        "resolved": len(to_resolve),
        "resolve_failures": len(resolve_failures),
        "resolves_per_second": round(len(to_resolve) / resolve_seconds, 1) if to_resolve else None,
        "answered_approved": approved_right,
        "timed_out": timeouts,
        "answered_pending_after_wait": len(timed_out_right),
        "timed_out_answer_after_s": round(min(timed_out_right), 1) if timed_out_right else None,
        "repolls_after_a_pending_answer": repolls,
        "answers": dict(Counter(f"{status} {state}" for status, state, _ in answers.values())),
        "client_errors": len(errors),
        "first_errors": errors[:5],
        "every_poller_answered": (
            not errors
            and not resolve_failures
            and held_confirmed >= count
            and approved_right == len(to_resolve)
            and len(timed_out_right) == timeouts
        ),
        "memory_before": before,
        "memory_held": during,
        "memory_after_resolves": peak_while_resolving,
        "memory_answered": answered_at,
        "memory_released": after,
        "rss_per_long_poll_kib": round((during["rss_kib"] - before["rss_kib"]) / count, 1),
        "rss_anon_per_long_poll_kib": round((during["rss_anon_kib"] - before["rss_anon_kib"]) / count, 1),
        "uss_per_long_poll_kib": round((during["uss_kib"] - before["uss_kib"]) / count, 1),
        "load_average": load_average(),
    }


# --- Report ---------------------------------------------------------------------------------


def commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return out + ("-dirty" if dirty else "")


def table(report: dict) -> str:
    lines = [
        "| point | decisions | VmRSS MiB | VmHWM MiB | RssAnon MiB | USS MiB | threads | fds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, sample: dict, decisions: int | str = "") -> None:
        count = f"{decisions:,}" if isinstance(decisions, int) else decisions
        lines.append(
            f"| {label} | {count} | {mib(sample['rss_kib'])} | {mib(sample['hwm_kib'])} | {mib(sample['rss_anon_kib'])} | "
            f"{mib(sample['uss_kib'])} | {sample['threads']} | {sample['fds']} |"
        )

    decisions = report.get("decisions")
    if decisions:
        row("start (idle)", decisions["start"], 0)
        row("after warm-up", decisions["warm"], decisions["warm_decisions"])
        for step in decisions["steps"]:
            row("step", step, step["decisions"])
    polls = report.get("long_polls")
    if polls:
        n = polls["long_polls"]
        row(f"{n:,} approvals raised", polls["memory_before"])
        row(f"{n:,} long-polls held", polls["memory_held"])
        row("all answered", polls["memory_answered"])
        row("released (6 s later)", polls["memory_released"])
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--step", type=int, help="read memory every STEP decisions (default: a tenth)")
    parser.add_argument("--long-polls", type=int, default=5000)
    parser.add_argument(
        "--timeouts", type=int, help="long-polls left to time out (default: 1 %%, at least 1)"
    )
    parser.add_argument(
        "--ramp",
        type=int,
        default=500,
        help="long-polls opened per second (0: all at once; on two busy cores that burst trips the database breaker)",
    )
    parser.add_argument("--quick", action="store_true", help="100,000 decisions, 500 long-polls")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8620")))
    parser.add_argument("--json", type=Path, help="write the results here (default: benchmarks/results/)")
    args = parser.parse_args()
    if args.quick:
        args.decisions, args.long_polls = 100_000, 500
    step = args.step or max(1, args.decisions // 10)
    timeouts = args.timeouts if args.timeouts is not None else max(1, args.long_polls // 100)

    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install -y wrk", file=sys.stderr)
        return 2
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veto_memory")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/4")
    if not database_url.startswith("postgres"):
        print("the benchmark runs on PostgreSQL: set DATABASE_URL to a postgres:// URL", file=sys.stderr)
        return 2
    # One socket per long-poll here, one there, and the server's own files besides.
    limits = raise_open_files_limit(args.long_polls + 1024)

    wall_started = time.monotonic()
    env = seeded_environment(database_url, redis_url)
    var_dir = Path(os.environ.get("VETO_VAR_DIR") or tempfile.mkdtemp(prefix="veto-web-memory-"))
    env.update(
        PORT=str(args.port),
        WEB_CONCURRENCY="1",
        VETO_VAR_DIR=str(var_dir),
        VETO_METRICS_TOKEN=METRICS_TOKEN,
    )
    base = f"http://127.0.0.1:{args.port}"
    server, log = start_server([sys.executable, "-m", "veto_cloud.serve"], env, base)
    report: dict = {
        "benchmark": "web_memory",
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "machine": machine(),
        "load_average_at_start": load_average(),
        "server": "python -m veto_cloud.serve, WEB_CONCURRENCY=1 (uvicorn, one process), DEBUG off",
        "connections": CONNECTIONS,
        "client_open_files_limit": limits,
    }
    try:
        pid = serving_pid(server.pid, args.port)
        report["server_pid_is_serve_pid"] = pid == server.pid
        report["server_open_files_limit"] = open_files_limit(pid)
        print(f"serving process {pid} (open files {report['server_open_files_limit']})", flush=True)
        start = memory(pid)

        if args.decisions > 0:
            script = Path(tempfile.mkdtemp()) / "validate.lua"
            script.write_text(
                lua_for(
                    "/v1/tools/validate",
                    VALIDATE_BODIES,
                    {"Content-Type": "application/json", "X-Veto-API-Key": API_KEY},
                )
            )
            print("warming up", flush=True)
            run_wrk(f"{base}/healthz", 2)
            run_wrk(f"{base}/v1/tools/validate", 5, script)
            time.sleep(0.5)
            warm = memory(pid)
            warm_decisions = decision_count(database_url)
            print(f"driving {args.decisions:,} decisions, memory every {step:,}", flush=True)
            report["decisions"] = drive_decisions(
                base=base,
                database_url=database_url,
                pid=pid,
                script=script,
                total=args.decisions,
                step=step,
                sample={"start": start, "warm": warm, "warm_decisions": warm_decisions},
            )
        else:
            report["decisions"] = None
        if args.long_polls > 0:
            print(f"holding {args.long_polls:,} long-polls ({timeouts} left to time out)", flush=True)
            report["long_polls"] = asyncio.run(
                hold_long_polls(base, pid, args.long_polls, timeouts, args.ramp)
            )
        report["server_peak_hwm_kib"] = memory(pid)["hwm_kib"]
    except Exception:
        print(f"server log: {log}", file=sys.stderr)
        raise
    finally:
        stop_server(server)
    report["wall_s"] = round(time.monotonic() - wall_started, 1)
    report["load_average_at_end"] = load_average()

    print(json.dumps(report, indent=2))
    print()
    print(table(report))
    d, p = report.get("decisions"), report.get("long_polls")
    if d:
        print(
            f"\ngrowth {d['growth_bytes_per_decision']['rss']} B/decision RSS "
            f"({d['rss_growth_mib_per_step_fitted']} MiB per {step:,}); rows {d['rows_recorded']:,} for "
            f"{d['answered']:,} answers: every answer recorded {d['every_answer_recorded']}"
        )
    if p:
        print(
            f"long-polls: {p['rss_per_long_poll_kib']} KiB RSS each; every poller answered {p['every_poller_answered']}"
        )
    print(f"wall time {report['wall_s']} s")

    path = (
        args.json
        or ROOT
        / "benchmarks"
        / "results"
        / f"web-memory-{report['date']}{'-quick' if args.quick else ''}.json"
    )
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"raw results: {path}")
    ok = (not d or d["every_answer_recorded"]) and (not p or p["every_poller_answered"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
