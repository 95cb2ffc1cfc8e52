#!/usr/bin/env python
"""200 live dashboards while 100 decisions/s arrive: does every page get every row, and how fast?

What it does (issue 12's live-path benchmark; figures for README "Performance"):

1. Creates a fresh PostgreSQL database (DATABASE_URL, default .../veto_fanout), migrates, seeds
   the demo team, key, users and rule set, and starts the real server as production does
   (``python -m veto_cloud.serve``: uvicorn, DEBUG off, PostgreSQL, Redis and so the
   channels-redis pub/sub layer). ``--servers 2`` starts two such servers on two ports: half of
   the pages and half of the decisions go to each, so every page gets half of its rows from the
   *other* process, through Redis.
2. Signs alice in as a browser does (the login form, its CSRF token) and opens ``--clients``
   websockets exactly as the decisions explorer's first page opens its socket
   (``/ws/live/?kinds=decisions&team=demo&rows=1&after=<head>``, the session cookie, the site's
   Origin), spread over ``--client-processes`` separate processes.
3. From this process, sends POST /v1/tools/validate at a steady ``--rate`` per second,
   open-loop (each call leaves at its scheduled time whether or not earlier ones have been
   answered): ``--warmup`` seconds, then ``--seconds`` measured. Each answer names its
   decision (metadata.decision_id); each row a page receives is ``<tr id="decision-<id>"
   data-sequence="<n>">``, so rows map back to calls.
4. Latency, per (page, decision) pair, on one clock (CLOCK_MONOTONIC is system-wide, so the
   processes share it): row received - request sent, and row received - answer received.
   Every page must receive every measured decision exactly once: missing and duplicate rows are
   counted per page and reported, never dropped from the figures.
5. Records CPU seconds of the server process(es), of each load process and of the whole
   machine over the measured window, with the load average: the load generators share the
   cores with the server, PostgreSQL and Redis.

Usage:  .venv/bin/python benchmarks/dashboard_fanout.py [--clients 200] [--rate 100] [--seconds 30]
                                                        [--servers 1|2] [--workers 1] [--ws-deflate on|off]
                                                        [--label NAME] [--json PATH]
        (A/B of code: run this file from a copy of the tree; the server runs from the file's tree.)
Needs:  PostgreSQL and Redis reachable via DATABASE_URL / REDIS_URL (defaults: local veto_fanout, db 10).
        The machine is shared: run each configuration at least twice, A/B interleaved, and read the
        load average kept with the figures.
Writes: benchmarks/results/dashboard-fanout-<date>[-servers2].json (per-page counts, percentiles, machine).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_throughput import (  # noqa: E402
    API_KEY,
    free_port,
    machine,
    seeded_environment,
    start_server,
    stop_server,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PASSWORD = "benchmark-password"  # VETO_DEMO_PASSWORD in validate_throughput.seeded_environment
VIEWER = "alice"
TEAM = "demo"
ROW = re.compile(r'<tr id="decision-([0-9a-f-]{36})" data-sequence="(\d+)"')
HEADERS = {"X-Veto-API-Key": API_KEY, "Content-Type": "application/json"}
GOAL_P95_MS = 250.0
# Nine in ten allowed, one in ten denied (the demo rules); no approvals, so the figures are the
# decisions' path alone.
ALLOWED = {
    "tool_name": "run_data_export",
    "arguments": {"bucket": "internal-reports", "rows": 1000, "include_pii": False},
    "context": {"session_id": "fanout", "agent_id": "bench-agent", "custom": {"environment": "staging"}},
}
DENIED = {
    "tool_name": "run_data_export",
    "arguments": {"bucket": "s3://public-dump", "rows": 10},
    "context": {"session_id": "fanout", "agent_id": "bench-agent"},
}


# --- CPU accounting from /proc ---------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def process_tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and every live descendant (uvicorn's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        if (fields := _stat_fields(pid)) is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
        stack.extend(children.get(pid, []))
    return total / CLOCK_TICKS


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS, sum(values[:8]) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def cpu_between(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """CPU seconds a process spent between two moments, from its (time, CPU) samples."""

    def at(moment: float) -> float:
        return min(samples, key=lambda sample: abs(sample[0] - moment))[1]

    return at(end) - at(start)


def py_spy_path() -> str:
    return os.environ.get("PY_SPY") or shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")


def start_profiles(
    folder: Path | None, servers: list[subprocess.Popen[bytes]], seconds: float
) -> list[subprocess.Popen[bytes]]:
    """py-spy on each server's process tree for the measured window (nothing without --profile)."""
    if folder is None:
        return []
    py_spy = py_spy_path()
    folder.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [py_spy, "record", "--pid", str(server.pid), "--subprocesses", "--format", "raw", "--rate", "50"]
            + ["--duration", str(int(seconds)), "--output", str(folder / f"server-{n}.txt"), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n, server in enumerate(servers)
    ]


def code_version() -> dict[str, Any]:
    """The commit the server ran from, and whether the live path's files differed from it."""

    def git(*command: str) -> str:
        result = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    live_files = ["dashboards", "veto_cloud/serve.py", "common/events.py"]
    return {
        "tree": str(ROOT),
        "commit": git("rev-parse", "--short", "HEAD"),
        "live_path_changes_not_committed": git("status", "--short", "--", *live_files).splitlines(),
    }


def server_deflate(env: dict[str, str]) -> bool | str:
    """What the server(s) negotiate: veto_cloud.serve's choice under ``env``."""
    code = "from veto_cloud import serve; print(int(serve.ws_per_message_deflate()))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # a tree whose serve.py has no such option: uvicorn's default
        return "uvicorn default (on)"
    return result.stdout.strip() == "1"


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# --- a browser's session ---------------------------------------------------------------------------


def session_cookie(base: str) -> str:
    """Sign the demo viewer in through the login form, as a browser does; the cookie it sets."""
    import httpx

    with httpx.Client(base_url=base, timeout=10) as client:
        form = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token is not None, form.text[:500]
        response = client.post(
            "/accounts/login/",
            data={"username": VIEWER, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
            headers={"Referer": f"{base}/accounts/login/"},
        )
        assert response.status_code == 302, response.text[:500]
        name = next(n for n in client.cookies if "session" in n)
        return f"{name}={client.cookies[name]}"


def decisions_head(database_url: str) -> int:
    """The demo team's last decision sequence: the cursor the explorer page is drawn at."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT coalesce(max(d.sequence), 0) FROM audit_decisionrecord d "
            "JOIN tenancy_team t ON t.id = d.team_id WHERE t.slug = %s",
            (TEAM,),
        ).fetchone()
        return int(row[0]) if row else 0


# --- the pages (child processes) -------------------------------------------------------------------


@dataclass
class Page:
    """One explorer page's socket: when each row first arrived, and how often it arrived."""

    first_seen: dict[int, float] = field(default_factory=dict)  # sequence -> monotonic time
    repeats: dict[int, int] = field(default_factory=dict)  # sequence -> extra copies
    messages: int = 0
    bytes: int = 0
    closed: str | None = None


LAST_ROW_AT = [0.0]  # when this process last received a row (monotonic)


async def _watch(
    url: str, cookie: str, origin: str, page: Page, ids: dict[int, str], ready: asyncio.Event
) -> None:
    import websockets

    try:
        async with websockets.connect(
            url, additional_headers={"Cookie": cookie}, origin=origin, open_timeout=30, max_size=None
        ) as socket:
            ready.set()
            async for message in socket:
                now = time.monotonic()
                text = message if isinstance(message, str) else message.decode()
                page.messages += 1
                page.bytes += len(text)
                for match in ROW.finditer(text):
                    sequence = int(match.group(2))
                    if sequence in page.first_seen:
                        page.repeats[sequence] = page.repeats.get(sequence, 0) + 1
                    else:
                        page.first_seen[sequence] = now
                        LAST_ROW_AT[0] = now
                        ids.setdefault(sequence, match.group(1))
    except Exception as exc:  # noqa: BLE001 - a page that fails is reported, not fatal
        page.closed = f"{type(exc).__name__}: {exc}"
        ready.set()
        return
    page.closed = "closed by the server"


async def _pages(
    urls: list[str], cookie: str, origins: list[str], ready_counter: Any, stop_at: Any, last_row: Any
) -> dict[str, Any]:
    ids: dict[int, str] = {}
    pages = [Page() for _ in urls]
    readies = [asyncio.Event() for _ in urls]
    tasks = []
    for url, origin, page, ready in zip(urls, origins, pages, readies, strict=True):
        tasks.append(asyncio.create_task(_watch(url, cookie, origin, page, ids, ready)))
        await ready.wait()  # one handshake at a time: pages open as people arrive, not in a stampede
        with ready_counter.get_lock():
            ready_counter.value += 1
    cpu_samples: list[tuple[float, float]] = []  # (monotonic, own CPU seconds), every 0.1 s
    while stop_at.value == 0 or time.monotonic() < stop_at.value:
        cpu_samples.append((time.monotonic(), own_cpu_seconds()))
        last_row.value = LAST_ROW_AT[0]
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "pages": [
            {
                "first_seen": p.first_seen,
                "repeats": p.repeats,
                "messages": p.messages,
                "bytes": p.bytes,
                "closed": p.closed,
            }
            for p in pages
        ],
        "ids": ids,
        "cpu_samples": cpu_samples,
    }


def pages_process(
    urls: list[str],
    cookie: str,
    origins: list[str],
    ready_counter: Any,
    stop_at: Any,
    last_row: Any,
    results: Any,
) -> None:
    """A load process holding some of the pages' sockets until ``stop_at`` (monotonic time)."""
    results.put(asyncio.run(_pages(urls, cookie, origins, ready_counter, stop_at, last_row)))


# --- the decisions (this process) ------------------------------------------------------------------


@dataclass
class Call:
    index: int
    scheduled: float
    measured: bool
    sent: float = 0.0
    answered: float = 0.0
    status: int = 0
    decision_id: str | None = None
    error: str | None = None


async def send_decisions(bases: list[str], rate: float, warmup: float, seconds: float) -> list[Call]:
    """POST /v1/tools/validate at ``rate`` per second, open loop, round robin over the servers."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=4)
    timeout = aiohttp.ClientTimeout(total=30)
    total = int(round((warmup + seconds) * rate))
    warmup_calls = int(round(warmup * rate))
    calls: list[Call] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(call: Call) -> None:
            base = bases[call.index % len(bases)]
            body = DENIED if call.index % 10 == 9 else ALLOWED
            call.sent = time.monotonic()
            try:
                async with session.post(f"{base}/v1/tools/validate", json=body, headers=HEADERS) as response:
                    call.status = response.status
                    payload = await response.json(content_type=None)
                    call.answered = time.monotonic()
                    if response.status == 200:
                        call.decision_id = (payload.get("metadata") or {}).get("decision_id")
                    else:
                        call.error = f"HTTP {response.status}: {json.dumps(payload)[:200]}"
            except Exception as exc:  # noqa: BLE001 - counted and reported
                call.answered = time.monotonic()
                call.error = f"{type(exc).__name__}: {exc}"

        start = time.monotonic() + 0.2
        tasks = []
        for index in range(total):
            call = Call(index=index, scheduled=start + index / rate, measured=index >= warmup_calls)
            calls.append(call)
            delay = call.scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(call)))
        await asyncio.gather(*tasks)
    return calls


# --- figures ----------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(math.ceil(fraction * len(ordered))) - 1)]


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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200, help="dashboard pages (websockets)")
    parser.add_argument("--rate", type=float, default=100.0, help="decisions per second, open loop")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of decisions before measuring")
    parser.add_argument("--drain", type=float, default=3.0, help="stop once no row has arrived for this long")
    parser.add_argument(
        "--drain-max", type=float, default=90.0, help="and wait at most this long for late rows"
    )
    parser.add_argument("--servers", type=int, default=1, help="web servers on their own ports (1 or 2)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per server")
    parser.add_argument(
        "--client-processes",
        type=int,
        default=0,
        help="processes holding the pages' sockets (default: 1 up to 50 pages, else 2)",
    )
    parser.add_argument(
        "--flush-seconds", type=float, default=None, help="VETO_LIVE_FLUSH_SECONDS for the server(s)"
    )
    parser.add_argument(
        "--ws-deflate",
        choices=("on", "off"),
        default=None,
        help="websocket per-message deflate on the server(s) (VETO_WS_PER_MESSAGE_DEFLATE; "
        "default: the server's own default, off)",
    )
    parser.add_argument("--label", default="", help="a name for this configuration, kept in the results")
    parser.add_argument(
        "--profile",
        type=Path,
        help="record the server(s) with py-spy over the measured window into this folder "
        "(collapsed stacks, one file per server; py-spy from PY_SPY, PATH or .venv/bin)",
    )
    parser.add_argument(
        "--json", type=Path, help="where to write the results (default benchmarks/results/...)"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veto_fanout")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/10")
    if not database_url.startswith("postgres") or not redis_url.startswith("redis"):
        print("the benchmark runs on PostgreSQL and Redis: set DATABASE_URL and REDIS_URL", file=sys.stderr)
        return 2
    if args.profile is not None and not Path(py_spy_path()).is_file():
        print(f"--profile needs py-spy (pip install py-spy; or PY_SPY=<path>): not at {py_spy_path()}")
        return 2
    client_processes = args.client_processes or (1 if args.clients <= 50 else 2)
    started_at = datetime.datetime.now(datetime.UTC)
    load_before = load_average()

    env = seeded_environment(database_url, redis_url)
    env.setdefault("VETO_VAR_DIR", "/tmp/var-fanout")
    if args.flush_seconds is not None:
        env["VETO_LIVE_FLUSH_SECONDS"] = str(args.flush_seconds)
    if args.ws_deflate is not None:
        env["VETO_WS_PER_MESSAGE_DEFLATE"] = "1" if args.ws_deflate == "on" else "0"
    servers: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    logs: list[Path] = []
    try:
        for _ in range(args.servers):
            port = free_port()
            server_env = dict(env, PORT=str(port), WEB_CONCURRENCY=str(args.workers))
            base = f"http://127.0.0.1:{port}"
            server, log = start_server([sys.executable, "-m", "veto_cloud.serve"], server_env, base)
            servers.append(server)
            logs.append(log)
            bases.append(base)
        print(f"{len(servers)} server(s) at {', '.join(bases)}, {args.workers} worker(s) each", flush=True)
        return run(args, env, database_url, bases, servers, client_processes, started_at, load_before)
    finally:
        for server in servers:
            stop_server(server)
        for log in logs:
            errors = [line for line in log.read_text().splitlines() if "ERROR" in line or "WARNING" in line]
            if errors:
                print(f"{log}: {len(errors)} warning/error lines, the last ones:", *errors[-5:], sep="\n  ")


def run(
    args: argparse.Namespace,
    env: dict[str, str],
    database_url: str,
    bases: list[str],
    servers: list[subprocess.Popen[bytes]],
    client_processes: int,
    started_at: datetime.datetime,
    load_before: list[float],
) -> int:
    cookie = session_cookie(bases[0])  # sessions live in the database: valid on every server
    head = decisions_head(database_url)
    query = f"kinds=decisions&team={TEAM}&rows=1&after={head}"
    page_urls = [
        bases[i % len(bases)].replace("http://", "ws://") + "/ws/live/?" + query for i in range(args.clients)
    ]
    origins = [bases[i % len(bases)] for i in range(args.clients)]

    context = mp.get_context("spawn")
    ready_counter = context.Value("i", 0)
    stop_at = context.Value("d", 0.0)
    last_rows = [context.Value("d", 0.0) for _ in range(client_processes)]
    results_queue = context.Queue()
    children = []
    for k in range(client_processes):
        share = list(range(k, args.clients, client_processes))
        child = context.Process(
            target=pages_process,
            args=(
                [page_urls[i] for i in share],
                cookie,
                [origins[i] for i in share],
                ready_counter,
                stop_at,
                last_rows[k],
                results_queue,
            ),
            daemon=True,
        )
        child.start()
        children.append((child, share))
    opened = time.monotonic()
    while ready_counter.value < args.clients:
        if time.monotonic() - opened > 120:
            print(f"only {ready_counter.value} of {args.clients} pages connected in 120 s", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(
        f"{args.clients} pages connected in {time.monotonic() - opened:.1f} s over "
        f"{client_processes} process(es); {args.warmup:.0f} s warm-up, then {args.seconds:.0f} s "
        f"at {args.rate:.0f} decisions/s",
        flush=True,
    )
    time.sleep(1.0)  # let the connect-time messages pass

    # Measurement window: CPU counters read at its edges (the warm-up is excluded).
    window: dict[str, Any] = {}

    async def drive() -> list[Call]:
        async def edges() -> None:
            await asyncio.sleep(0.2 + args.warmup)
            window["start"] = time.monotonic()
            window["profiles"] = start_profiles(args.profile, servers, args.seconds)
            window["server_cpu_start"] = [process_tree_cpu_seconds(s.pid) for s in servers]
            window["machine_start"] = machine_busy_seconds()
            window["own_cpu_start"] = own_cpu_seconds()
            await asyncio.sleep(args.seconds)
            window["end"] = time.monotonic()
            for profiler in window["profiles"]:
                await asyncio.to_thread(profiler.wait, 30)
            window["server_cpu_end"] = [process_tree_cpu_seconds(s.pid) for s in servers]
            window["machine_end"] = machine_busy_seconds()
            window["own_cpu_end"] = own_cpu_seconds()
            window["load_during"] = load_average()

        edge_task = asyncio.create_task(edges())
        calls = await send_decisions(bases, args.rate, args.warmup, args.seconds)
        await edge_task
        return calls

    calls = asyncio.run(drive())
    # Late rows still count (and show in the percentiles): wait until the pages have received
    # nothing for --drain seconds, at most --drain-max seconds; what has not come by then is missing.
    calls_done = time.monotonic()
    while True:
        time.sleep(0.2)
        now = time.monotonic()
        quiet = now - max(v.value for v in last_rows)
        if (quiet >= args.drain and now - calls_done >= args.drain) or now - calls_done >= args.drain_max:
            break
    drained = time.monotonic() - calls_done
    window["server_cpu_drained"] = [process_tree_cpu_seconds(s.pid) for s in servers]
    print(f"drained {drained:.1f} s after the last answer", flush=True)
    window["drained_seconds"] = round(drained, 1)
    stop_at.value = time.monotonic()
    child_results = [results_queue.get(timeout=120) for _ in children]
    for child, _ in children:
        child.join(timeout=10)
    return report(args, env, bases, client_processes, calls, child_results, window, started_at, load_before)


def report(
    args: argparse.Namespace,
    env: dict[str, str],
    bases: list[str],
    client_processes: int,
    calls: list[Call],
    child_results: list[dict[str, Any]],
    window: dict[str, Any],
    started_at: datetime.datetime,
    load_before: list[float],
) -> int:
    ids: dict[int, str] = {}
    for result in child_results:
        ids.update(result["ids"])
    sequence_of = {decision_id: sequence for sequence, decision_id in ids.items()}
    measured = [c for c in calls if c.measured]
    answered = [c for c in measured if c.status == 200 and c.decision_id]
    failed = [c for c in measured if c not in answered]
    by_sequence: dict[int, Call] = {}
    never_seen_by_any = 0
    for call in answered:
        sequence = sequence_of.get(str(call.decision_id))
        if sequence is None:
            never_seen_by_any += 1
        else:
            by_sequence[sequence] = call
    expected = len(answered)

    from_sent: list[float] = []
    from_answer: list[float] = []
    per_page = []
    for result in child_results:
        for page in result["pages"]:
            got = [s for s in page["first_seen"] if s in by_sequence]
            for sequence in got:
                received = page["first_seen"][sequence]
                call = by_sequence[sequence]
                from_sent.append(received - call.sent)
                from_answer.append(received - call.answered)
            duplicates = sum(n for s, n in page["repeats"].items() if s in by_sequence)
            per_page.append(
                {
                    "received": len(got),
                    "missing": expected - len(got),
                    "duplicates": duplicates,
                    "messages": page["messages"],
                    "bytes": page["bytes"],
                    "closed": page["closed"],
                    "missing_sample": sorted(set(by_sequence) - set(got))[:10],
                }
            )
    missing_total = sum(p["missing"] for p in per_page)
    duplicates_total = sum(p["duplicates"] for p in per_page)
    pages_complete = sum(1 for p in per_page if p["missing"] == 0 and p["duplicates"] == 0)
    lateness = [c.sent - c.scheduled for c in measured]
    validate = [c.answered - c.sent for c in answered]

    wall = window["end"] - window["start"]
    busy = window["machine_end"][0] - window["machine_start"][0]
    machine_total = window["machine_end"][1] - window["machine_start"][1]
    server_cpu = [
        end - start for start, end in zip(window["server_cpu_start"], window["server_cpu_end"], strict=True)
    ]
    generator_cpu = window["own_cpu_end"] - window["own_cpu_start"]
    stats = summary_ms(from_sent)
    goal_met = bool(stats) and stats["p95_ms"] < GOAL_P95_MS and missing_total == 0 and duplicates_total == 0

    summary = {
        "benchmark": "dashboard_fanout",
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": {
            **machine(),
            "nproc": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_during": window["load_during"],
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        },
        "setup": {
            "servers": len(bases),
            "workers_per_server": args.workers,
            "server_command": "python -m veto_cloud.serve (uvicorn, DEBUG off, PostgreSQL, Redis pub/sub layer)",
            "label": args.label,
            "code": code_version(),
            "live_flush_seconds": float(env.get("VETO_LIVE_FLUSH_SECONDS", "0.1")),
            "ws_per_message_deflate": server_deflate(env),
            "clients": args.clients,
            "client_processes": client_processes,
            "pages_split_over_servers": len(bases) > 1,
            "decisions_split_over_servers": len(bases) > 1,
            "rate_per_second": args.rate,
            "warmup_seconds": args.warmup,
            "measured_seconds": args.seconds,
            "waited_for_late_rows_seconds": window["drained_seconds"],
            "socket_query": f"kinds=decisions&team={TEAM}&rows=1&after=<head>",
            "viewer": f"{VIEWER} (one signed-in session shared by every page)",
            "profiled_with_py_spy": args.profile is not None,
        },
        "decisions": {
            "measured_calls": len(measured),
            "answered_200": expected,
            "failed": len(failed),
            "failures": sorted({c.error or f"HTTP {c.status}" for c in failed})[:10],
            "achieved_rate_per_second": round(len(measured) / wall, 1),
            "send_lateness": summary_ms(lateness),
            "validate_latency": summary_ms(validate),
            "answered_but_seen_by_no_page": never_seen_by_any,
        },
        "delivery": {
            "expected_rows_per_page": expected,
            "pages_complete": pages_complete,
            "pages": len(per_page),
            "missing_rows_total": missing_total,
            "duplicate_rows_total": duplicates_total,
            "pages_with_missing": sum(1 for p in per_page if p["missing"]),
            "pages_with_duplicates": sum(1 for p in per_page if p["duplicates"]),
            "pages_closed_early": sum(
                1 for p in per_page if p["closed"] not in (None, "closed by the server")
            ),
            "messages_per_page_per_second": round(
                statistics.fmean(p["messages"] for p in per_page) / (wall + args.warmup), 1
            ),
        },
        "latency_row_received_minus_request_sent": stats,
        "latency_row_received_minus_answer_received": summary_ms(from_answer),
        "cpu_over_measured_window": {
            "wall_seconds": round(wall, 2),
            # From the measured window's start until the last late row: the work those rows cost,
            # less sensitive than the latencies to what else the machine runs.
            "server_cpu_ms_per_1000_rows_delivered": round(
                1e6
                * sum(
                    end - start
                    for start, end in zip(
                        window["server_cpu_start"], window["server_cpu_drained"], strict=True
                    )
                )
                / max(1, len(from_sent)),
                1,
            ),
            "server_cpu_percent_of_one_core": [round(100 * s / wall, 1) for s in server_cpu],
            "generator_process_cpu_percent": round(100 * generator_cpu / wall, 1),
            "page_processes_cpu_percent": [
                round(100 * cpu_between(r["cpu_samples"], window["start"], window["end"]) / wall, 1)
                for r in child_results
            ],
            "machine_busy_percent_of_all_cores": round(100 * busy / machine_total, 1)
            if machine_total
            else None,
        },
        "goal": {
            "p95_under_ms": GOAL_P95_MS,
            "every_page_every_row_once": missing_total == 0 and duplicates_total == 0,
        },
        "goal_met": goal_met,
        "per_page": per_page,
    }
    date = started_at.strftime("%Y-%m-%d")
    suffix = "" if len(bases) == 1 else f"-servers{len(bases)}"
    path = args.json or RESULTS / f"dashboard-fanout-{date}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")

    s, a, d = stats, summary["latency_row_received_minus_answer_received"], summary["delivery"]
    cpu = summary["cpu_over_measured_window"]
    print()
    print(
        f"| {args.clients} pages, {args.rate:.0f} decisions/s, {args.seconds:.0f} s, {len(bases)} server(s) | p50 ms | p95 ms | p99 ms | max ms |"
    )
    print("|---|---:|---:|---:|---:|")
    print(
        f"| row at page - request sent | {s.get('p50_ms')} | {s.get('p95_ms')} | {s.get('p99_ms')} | {s.get('max_ms')} |"
    )
    print(
        f"| row at page - answer received | {a.get('p50_ms')} | {a.get('p95_ms')} | {a.get('p99_ms')} | {a.get('max_ms')} |"
    )
    v = summary["decisions"]["validate_latency"]
    print(
        f"| validate answer (for context) | {v.get('p50_ms')} | {v.get('p95_ms')} | {v.get('p99_ms')} | {v.get('max_ms')} |"
    )
    print()
    print(
        f"decisions: {expected} answered of {len(measured)} sent ({len(failed)} failed), "
        f"{summary['decisions']['achieved_rate_per_second']}/s; send lateness p99 "
        f"{summary['decisions']['send_lateness'].get('p99_ms')} ms"
    )
    print(
        f"delivery: {d['pages_complete']}/{d['pages']} pages got every row exactly once; "
        f"missing {d['missing_rows_total']} (on {d['pages_with_missing']} pages), "
        f"duplicates {d['duplicate_rows_total']} (on {d['pages_with_duplicates']} pages), "
        f"closed early {d['pages_closed_early']}"
    )
    print(
        f"cpu: server(s) {cpu['server_cpu_percent_of_one_core']} % of a core, generator "
        f"{cpu['generator_process_cpu_percent']} %, page processes {cpu['page_processes_cpu_percent']} %, "
        f"machine {cpu['machine_busy_percent_of_all_cores']} % of {os.cpu_count()} cores; "
        f"load {load_before} before, {window['load_during']} during"
    )
    print(f"goal (p95 < {GOAL_P95_MS:.0f} ms, every page every row once): {'met' if goal_met else 'NOT met'}")
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0 if goal_met else 1


if __name__ == "__main__":
    sys.exit(main())
