#!/usr/bin/env python
"""Where a validate request's CPU goes, by component, against the same server's /healthz (issue 14).

What it does:

1. A fresh PostgreSQL database, migrated and seeded, and the server started exactly as in
   production (``python -m veto_cloud.serve``, DEBUG off, PostgreSQL + Redis, 2 uvicorn workers),
   as ``validate_throughput.py`` does, with its body mix (80 % allow, 10 % deny, 10 %
   require_approval).
2. **Accounting runs** (nothing attached): wrk, 32 keep-alive connections, ``--seconds`` per
   target, while the CPU time (``/proc/<pid>/stat``) of every process group is read before and
   after: the uvicorn workers, the uvicorn parent, the PostgreSQL backends connected to this
   database, PostgreSQL's own background processes (walwriter, checkpointer, ...; shared with
   anyone else using the server), redis-server (shared too) and wrk itself (its rusage). Divided
   by the requests answered: **µs of CPU per request for each group**. During the validate run
   ``pg_stat_activity`` of this database's backends is sampled (what they were doing: on CPU,
   waiting for a lock, for the WAL flush, idle), which says how much of the writer's round trip
   is the chain head's lock wait.
3. **Profile runs**: the same load again with ``py-spy record --nonblocking`` attached to every
   worker (raw collapsed stacks, which ``--profile-out`` keeps; speedscope can open them), and,
   with ``--perf``, ``perf record`` on the PostgreSQL backends (their share by function: the
   linking function's PL/pgSQL, the insert, JSON, the WAL flush). Each worker sample is put into
   one component by the deepest frame that names one (``COMPONENTS``): the share of samples times
   the workers' CPU per request from step 2 gives µs per request per component.
4. Prints the table and writes JSON (``--json``; default ``benchmarks/results/profile-validate-<date>.json``)
   with the machine, load average before and after, and the git commit.

Absolute rates on a shared machine mean little; CPU per request and the proportions do. So the
``--ab COMMIT`` mode (interleaved A/B, ``--pairs``) compares another commit's server with this
checkout's on CPU µs per validate request (workers + PostgreSQL backends) as well as req/s.

Usage:  .venv/bin/python benchmarks/profile_validate.py [--seconds 15] [--port 8650] [--perf] [--quick]
        .venv/bin/python benchmarks/profile_validate.py --ab 25d0c26 --pairs 4
Needs:  wrk, py-spy (in the virtualenv), PostgreSQL and Redis (DATABASE_URL / REDIS_URL); perf for --perf.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate_throughput as vt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# (component, pattern on a frame "function (path:line)"): a sample goes to the component of its
# deepest (nearest the leaf) frame that matches any pattern; patterns are tried in this order for
# each frame, so a more specific one goes first.
COMPONENTS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("writer: psycopg (driver, round trip)", r"\(psycopg/"),
        (
            "writer: encoding (record parts, JSON of rows)",
            r"^(_statement_and_parameters|_fill_context_columns|decision_record_parts|RecordParts|_json_default|canonical\w*|sorted_stringify) \((runtime/writer|audit/chain)\.py",
        ),
        ("writer: batching, settling waiters", r"\(runtime/writer\.py"),
        ("metrics", r"\((common/metrics|prometheus_client/)"),
        ("events / live sinks", r"\((common/events|audit/events|dashboards/|webhooks/)"),
        (
            "Redis client (rate limits, session history)",
            r"\((redis/|policies/rate_limiter|policies/session_history)",
        ),
        ("engine (rules, tool policy)", r"\(policies/"),
        ("decision row (runtime/decisions.py)", r"\(runtime/decisions\.py"),
        ("validate orchestration (runtime/validate.py)", r"\(runtime/validate\.py"),
        (
            "parsing (pydantic, body checks)",
            r"^(GatewayRequest\.parse|refuse_nul|refuse_json_constants) |\((pydantic/|pydantic_core/|common/edge\.py)",
        ),
        ("authentication (key cache, scopes)", r"\((runtime/authentication|tenancy/)"),
        (
            "response encoding",
            r"^(Gateway\._send|Gateway\._headers|ToolCallValidateResponse\.\w+|\w+Response\.from_outcome) |\(runtime/schemas\.py",
        ),
        ("endpoint (runtime/endpoints)", r"\(runtime/endpoints/"),
        ("gateway (routing, headers, request id, body read)", r"\((runtime/gateway|common/request_id)\.py"),
        ("HTTP (uvicorn, httptools, our protocol)", r"\((uvicorn/|httptools/|veto_cloud/http_protocol)"),
        ("asyncio (tasks, futures, timers)", r"\((asyncio/|uvloop/)"),
        ("Django (settings, connections)", r"\(django/"),
        ("threads (db thread pool, asgiref)", r"\((threading|concurrent/|asgiref/)"),
    ]
]
OTHER = "other Python"


# Work done on behalf of a subscriber counts for it wherever it ends (Django templates, psycopg).
OWNERS: list[tuple[str, re.Pattern[str]]] = [
    ("events / live sinks", re.compile(r"\((dashboards/|webhooks/|common/events\.py|audit/events\.py)")),
]


def component_of(frames: list[str]) -> str:
    for name, pattern in OWNERS:
        if any(pattern.search(frame) for frame in frames):
            return name
    for frame in reversed(frames):
        for name, pattern in COMPONENTS:
            if pattern.search(frame):
                return name
    return OTHER


EVENT_LOOP = "event loop itself (uvloop: epoll, socket reads/writes, callbacks)"


def classify(raw: str) -> Counter[str]:
    """The main thread's (the event loop's) samples per component, from py-spy's raw output
    (``frame;frame;... count`` per line). Other threads' stacks start at ``Thread._bootstrap``:
    their CPU is read per thread from /proc instead (py-spy's idle detection, by the thread's
    OS state, counts a runnable thread waiting for a CPU as busy, and a sleeping watchdog was
    counted busy too)."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if any(frame.startswith("Thread._bootstrap ") for frame in frames[:2]):
            continue
        name = component_of(frames)
        if name == "asyncio (tasks, futures, timers)" and not any(
            f
            for f in frames
            if "asyncio/" not in f
            and "uvicorn/" not in f
            and "multiprocessing/" not in f
            and "<module>" not in f
            and "spawn" not in f
        ):
            name = EVENT_LOOP  # no Python frame below the loop's run: C code of uvloop
        counts[name] += int(count)
    return counts


# --- CPU time of processes -----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its own threads), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of a process, by OS thread id."""
    found = {}
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found[int(task.name)] = cpu_seconds_of(task / "stat")
    return found


def cpu_seconds_of(stat: Path) -> float:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_names(pid: int) -> dict[int, str]:
    """OS thread id -> Python thread name (py-spy dump), pool threads' numbers dropped."""
    dump = subprocess.run(
        [str(ROOT / ".venv/bin/py-spy"), "dump", "--pid", str(pid), "--nonblocking"],
        capture_output=True,
        text=True,
    ).stdout
    names = {}
    for tid, name in re.findall(r'^Thread (\d+) \([^)]*\): "([^"]*)"', dump, re.M):
        names[int(tid)] = re.sub(r"[-_]\d+", "-N", re.sub(r"^Thread-\d+ \((.*)\)$", r"\1", name))
    return names


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def uvicorn_workers(server_pid: int) -> tuple[int, list[int]]:
    """(the uvicorn parent, its worker processes); the resource tracker is not a worker."""
    uvicorn = server_pid
    workers = []
    for child in children(server_pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            workers.append(child)
        elif b"uvicorn" in cmdline:
            uvicorn = child
    if uvicorn != server_pid:
        return uvicorn_workers(uvicorn)
    return uvicorn, workers


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


def machine_busy_seconds() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


class Groups:
    """The process groups whose CPU is accounted, found once the server runs."""

    def __init__(self, server_pid: int, database_url: str) -> None:
        self.uvicorn, self.workers = uvicorn_workers(server_pid)
        name = database_url.rsplit("/", 1)[1]
        with psycopg.connect(database_url, autocommit=True) as conn:
            mine = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            self.backends = [
                pid
                for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s", (name, mine)
                ).fetchall()
            ]
            self.pg_background = [
                pid
                for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'"
                ).fetchall()
            ]
        self.redis = pids_named("redis-server")
        self.names: dict[int, str] = {}
        for worker in self.workers:
            self.names |= thread_names(worker)

    def threads(self) -> dict[str, float]:
        """The workers' CPU seconds by thread name (all workers' threads of a name together)."""
        by_name: dict[str, float] = {}
        for worker in self.workers:
            seconds_by_tid = thread_cpu_seconds(worker)
            if any(tid not in self.names for tid in seconds_by_tid):
                self.names |= thread_names(worker)
            for tid, seconds in seconds_by_tid.items():
                name = self.names.get(tid, "(a thread started since)")
                by_name[name] = by_name.get(name, 0.0) + seconds
        return by_name

    def snapshot(self) -> dict[str, float]:
        def total(pids: list[int]) -> float:
            return sum(cpu_seconds(pid) for pid in pids)

        return {
            "uvicorn workers": total(self.workers),
            "uvicorn parent": cpu_seconds(self.uvicorn),
            "PostgreSQL backends (this database)": total(self.backends),
            "PostgreSQL background (walwriter etc., shared)": total(self.pg_background),
            "redis-server (shared)": total(self.redis),
            "machine (all processes)": machine_busy_seconds(),
        }


def wrk(url: str, seconds: int, script: Path | None = None) -> tuple[dict, float]:
    """wrk's figures and its own CPU seconds (the rusage of the child, waited for here)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome = vt.run_wrk(url, seconds, script)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return outcome, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


class ActivitySampler(threading.Thread):
    """Samples what this database's backends are doing (pg_stat_activity) every ``interval`` s."""

    def __init__(self, database_url: str, pids: list[int], interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.url, self.pids, self.interval = database_url, pids, interval
        self.states: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                for state, wait_type, wait_event in conn.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE pid = ANY(%s)",
                    (self.pids,),
                ).fetchall():
                    if state != "active":
                        self.states["idle (waiting for the client)"] += 1
                    elif wait_type is None:
                        self.states["active, on CPU (or runnable)"] += 1
                    else:
                        self.states[f"active, waiting {wait_type}:{wait_event}"] += 1
                time.sleep(self.interval)


# --- a run ---------------------------------------------------------------------------------------


def account(base: str, groups: Groups, seconds: int, script: Path | None, path: str, url: str) -> dict:
    sampler = ActivitySampler(url, groups.backends) if script is not None else None
    before = groups.snapshot()
    threads_before = groups.threads()
    if sampler:
        sampler.start()
    outcome, wrk_cpu = wrk(base + path, seconds, script)
    if sampler:
        sampler.stop.set()
        sampler.join()
    after = groups.snapshot()
    threads_after = groups.threads()
    requests = outcome["requests"]
    per_request = {name: (after[name] - before[name]) * 1e6 / requests for name in before}
    per_request["wrk"] = wrk_cpu * 1e6 / requests
    per_thread = {
        name: round((threads_after.get(name, 0.0) - threads_before.get(name, 0.0)) * 1e6 / requests, 1)
        for name in threads_after
    }
    result = {
        "wrk": outcome,
        "seconds": seconds,
        "main_thread_cpu_seconds": threads_after.get("MainThread", 0.0)
        - threads_before.get("MainThread", 0.0),
        "cpu_us_per_request": {k: round(v, 1) for k, v in per_request.items()},
        "worker_threads_us_per_request": dict(sorted(per_thread.items(), key=lambda kv: -kv[1])),
    }
    if sampler:
        total = sum(sampler.states.values()) or 1
        result["backend_states"] = {k: round(v / total, 3) for k, v in sampler.states.most_common()}
    return result


def profile(
    base: str,
    groups: Groups,
    seconds: int,
    script: Path | None,
    path: str,
    rate: int,
    out_dir: Path,
    tag: str,
    perf: bool,
    sampler: str = "py-spy",
) -> dict:
    if sampler == "cpu":
        return profile_cpu(base, groups, seconds, script, path, out_dir, tag, perf, rate)
    spies = []
    for pid in groups.workers:
        out = out_dir / f"{tag}-{pid}.txt"
        spies.append(
            (
                out,
                subprocess.Popen(
                    [
                        str(ROOT / ".venv/bin/py-spy"),
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        str(rate),
                        "--nonblocking",
                        "--format",
                        "raw",
                        "--duration",
                        str(seconds),
                        "--output",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                ),
            )
        )
    perf_proc = None
    perf_data = out_dir / f"{tag}-postgres.perf"
    if perf and groups.backends:
        perf_proc = subprocess.Popen(
            [
                "perf",
                "record",
                "-F",
                str(rate),
                "-g",
                "-o",
                str(perf_data),
                "-p",
                ",".join(map(str, groups.backends)),
                "--",
                "sleep",
                str(seconds),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    time.sleep(0.5)  # py-spy attaches
    threads_before = groups.threads()
    outcome, _ = wrk(base + path, seconds, script)
    main_cpu = groups.threads().get("MainThread", 0.0) - threads_before.get("MainThread", 0.0)
    counts: Counter[str] = Counter()
    raw_text = ""
    for out, spy in spies:
        spy.wait(timeout=60)
        if out.exists():
            text = out.read_text()
            raw_text += text
            counts += classify(text)
    (out_dir / f"{tag}.collapsed.txt").write_text(raw_text)
    # py-spy counts a runnable thread as busy: the loop woken from epoll and waiting for a CPU
    # is sampled at the loop's top. Samples past what the thread's CPU time allows come off there.
    sampled = sum(counts.values())
    expected = main_cpu * rate
    surplus = max(0.0, sampled - expected)
    removed = min(surplus, counts.get(EVENT_LOOP, 0))
    if removed:
        counts[EVENT_LOOP] -= round(removed)
    total = sum(counts.values()) or 1
    result: dict = {
        "wrk": outcome,
        "main_thread_samples": sampled,
        "main_thread_samples_cpu_allows": round(expected),
        "samples_taken_off_the_loop_top": round(removed),
        "share": {k: round(v / total, 4) for k, v in counts.most_common()},
    }
    if perf_proc is not None:
        perf_proc.wait(timeout=60)
        result["postgres_share"] = perf_symbols(perf_data)
    return result


def start_perf(groups: Groups, seconds: int, rate: int, data: Path) -> subprocess.Popen[bytes] | None:
    if not groups.backends:
        return None
    return subprocess.Popen(
        [
            "perf",
            "record",
            "-F",
            str(rate),
            "-g",
            "-o",
            str(data),
            "-p",
            ",".join(map(str, groups.backends)),
            "--",
            "sleep",
            str(seconds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_cpu(
    base: str,
    groups: Groups,
    seconds: int,
    script: Path | None,
    path: str,
    out_dir: Path,
    tag: str,
    perf: bool,
    rate: int,
) -> dict:
    """The workers' main threads sampled on CPU time (benchmarks/cpu_sampler), SIGUSR1 to SIGUSR2."""
    for pid in groups.workers:
        (out_dir / f"{pid}.txt").unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR1)
    perf_data = out_dir / f"{tag}-postgres.perf"
    perf_proc = start_perf(groups, seconds, rate, perf_data) if perf else None
    outcome, _ = wrk(base + path, seconds, script)
    for pid in groups.workers:
        os.kill(pid, signal.SIGUSR2)
    raw_text = ""
    for pid in groups.workers:
        out = out_dir / f"{pid}.txt"
        for _ in range(100):
            if out.exists():
                break
            time.sleep(0.1)
        raw_text += out.read_text() if out.exists() else ""
    (out_dir / f"{tag}.collapsed.txt").write_text(raw_text)
    counts = classify(raw_text)
    total = sum(counts.values()) or 1
    result: dict = {
        "wrk": outcome,
        "sampler": "CPU time (ITIMER_PROF, benchmarks/cpu_sampler)",
        "main_thread_samples": total,
        "share": {k: round(v / total, 4) for k, v in counts.most_common()},
    }
    if perf_proc is not None:
        perf_proc.wait(timeout=60)
        result["postgres_share"] = perf_symbols(perf_data)
    return result


# PostgreSQL functions by what they are doing, for the backends' perf profile (children included:
# a sample counts for every frame on its stack that matches, so shares overlap).
PG_PARTS = {
    "linking (audit_link_decisions: PL/pgSQL)": r"plpgsql_exec_function|exec_stmt",
    "JSON in (jsonb_to_recordset, jsonb parsing)": r"jsonb_to_recordset|populate_recordset|pg_parse_json|jsonb_in|JsonbValue|json_lex",
    "insert (heap, indexes)": r"ExecInsert|heap_insert|btinsert|index_insert",
    "commit (WAL flush, fdatasync)": r"XLogFlush|issue_xlog_fsync|fdatasync",
    "executor (all statement execution)": r"standard_ExecutorRun|ExecutorRun|PortalRun",
    "WAL insert": r"XLogInsert",
    "sha256": r"sha256|SHA256|pg_cryptohash",
    "planning / parse": r"pg_plan_queries|standard_planner|pg_analyze|raw_parser",
    "network (libpq protocol)": r"pq_getbyte|secure_read|secure_write|pq_flush",
}


def perf_symbols(data: Path) -> dict:
    if not data.exists() or data.stat().st_size == 0:
        return {"error": "perf recorded nothing (not permitted here?)"}
    report = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True, text=True).stdout
    # A sample: its header line, then one line per frame, leaf first ("addr symbol+off (dso)").
    samples = [s.strip().splitlines() for s in re.split(r"\n\s*\n", report) if s.strip()]
    samples = [s for s in samples if len(s) > 1]
    total = len(samples) or 1
    shares = {}
    for name, pattern in PG_PARTS.items():
        matcher = re.compile(pattern)
        shares[name] = round(sum(1 for s in samples if any(matcher.search(f) for f in s[1:])) / total, 3)

    def symbol(frame: str) -> str:
        parts = frame.split(None, 1)
        return re.sub(r"\+0x[0-9a-f]+", "", parts[1]) if len(parts) > 1 else frame

    leaf = Counter(symbol(s[1]) for s in samples)
    return {
        "samples": total,
        "inclusive_share": shares,
        "top_leaf": {k: round(v / total, 3) for k, v in leaf.most_common(15)},
    }


SAMPLER = Path(__file__).resolve().parent / "cpu_sampler"


def server_for(
    tree: Path, env: dict[str, str], port: int, workers: int, sampler_dir: Path | None = None, rate: int = 500
):
    env = dict(env, PORT=str(port), WEB_CONCURRENCY=str(workers), PYTHONPATH=str(tree))
    if sampler_dir is not None:  # benchmarks/cpu_sampler/sitecustomize.py, in every process
        env.update(
            PYTHONPATH=f"{tree}{os.pathsep}{SAMPLER}",
            VETO_CPU_SAMPLER_DIR=str(sampler_dir),
            VETO_CPU_SAMPLER_INTERVAL=str(1 / rate),
        )
    old_root, vt.ROOT = vt.ROOT, tree  # the server runs in the tree (cwd first on its path)
    try:
        return vt.start_server([sys.executable, "-m", "veto_cloud.serve"], env, f"http://127.0.0.1:{port}")
    finally:
        vt.ROOT = old_root


def seeded(tree: Path, database_url: str, redis_url: str) -> dict[str, str]:
    """Migrate with the tree's own code (its migrations), as validate_ab.py does."""
    here = Path.cwd()
    os.chdir(tree)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tree)
    try:
        old_root = vt.ROOT
        vt.ROOT = tree
        return vt.seeded_environment(database_url, redis_url)
    finally:
        vt.ROOT = old_root
        os.chdir(here)
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def validate_script() -> Path:
    script = Path(tempfile.mkdtemp()) / "validate.lua"
    script.write_text(
        vt.lua_for(
            "/v1/tools/validate",
            vt.VALIDATE_BODIES,
            {"Content-Type": "application/json", "X-Veto-API-Key": vt.API_KEY},
        )
    )
    return script


def component_table(accounted: dict, profiled: dict) -> dict[str, float]:
    """µs of CPU per request: the workers' split by the profile's shares, the other groups as measured."""
    cpu = accounted["cpu_us_per_request"]
    threads = accounted["worker_threads_us_per_request"]
    main = threads.get("MainThread", 0.0)
    table = {f"worker loop: {k}": round(main * v, 1) for k, v in profiled["share"].items()}
    for name, value in threads.items():
        if name != "MainThread" and value >= 0.1:
            table[f"worker thread: {name}"] = value
    for name in (
        "PostgreSQL backends (this database)",
        "PostgreSQL background (walwriter etc., shared)",
        "redis-server (shared)",
        "uvicorn parent",
        "wrk",
    ):
        table[name] = cpu[name]
    table["total (workers + PostgreSQL backends + wrk)"] = round(
        cpu["uvicorn workers"] + cpu["PostgreSQL backends (this database)"] + cpu["wrk"], 1
    )
    table["machine, all processes (includes other users of the machine)"] = cpu["machine (all processes)"]
    return table


def goals_of(result: dict) -> list[dict]:
    """Issue 14's goals this run speaks to, for benchmarks/run_all.py (``listed_goals``)."""
    total = "total (workers + PostgreSQL backends + wrk)"
    validate = result["validate"]["us_per_request"][total]
    healthz = result["healthz"]["us_per_request"][total]
    pg = result["validate"]["us_per_request"]["PostgreSQL backends (this database)"]
    return [
        {
            "goal": "profile of the whole validate request, by component (µs of CPU per request)",
            "measured": f"validate {validate:.0f} µs all in (PostgreSQL backends {pg:.0f}), /healthz {healthz:.0f} µs",
            "met": None,
        },
        {
            "goal": "validate at >= 0.5x /healthz: by CPU per request, the ratio the 2 cores allow",
            "measured": f"{healthz / validate:.2f}x (0.5x needs validate <= {2 * healthz:.0f} µs all in)",
            "met": healthz / validate >= 0.5,
        },
    ]


def git_commit(tree: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
    ).stdout.strip()


def run_profile(args: argparse.Namespace, database_url: str, redis_url: str) -> dict:
    made: list[Path] = []
    tree = tree_of(args.tree, made) if args.tree else ROOT
    try:
        return profile_tree(tree, args, database_url, redis_url) | {
            "tree": args.tree or "this checkout",
            "tree_commit": git_commit(tree),
        }
    finally:
        for path in made:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


def profile_tree(tree: Path, args: argparse.Namespace, database_url: str, redis_url: str) -> dict:
    env = seeded(tree, database_url, redis_url)
    out_dir = Path(tempfile.mkdtemp(prefix="profile-validate-"))
    server, _ = server_for(
        tree, env, args.port, args.workers, out_dir if args.sampler == "cpu" else None, args.rate
    )
    base = f"http://127.0.0.1:{args.port}"
    script = validate_script()
    load_before = os.getloadavg()
    try:
        print("warming up", flush=True)
        vt.run_wrk(f"{base}/healthz", 2)
        vt.run_wrk(f"{base}/v1/tools/validate", 4, script)
        groups = Groups(server.pid, database_url)
        result: dict = {"healthz": {}, "validate": {}}
        for target, path, lua in (("healthz", "/healthz", None), ("validate", "/v1/tools/validate", script)):
            print(f"accounting {target}", flush=True)
            result[target]["accounting"] = account(base, groups, args.seconds, lua, path, database_url)
            print(f"profiling {target}", flush=True)
            result[target]["profile"] = profile(
                base,
                groups,
                args.seconds,
                lua,
                path,
                args.rate,
                out_dir,
                target,
                args.perf and lua is not None,
                args.sampler,
            )
            result[target]["us_per_request"] = component_table(
                result[target]["accounting"], result[target]["profile"]
            )
    finally:
        vt.stop_server(server)
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    result["profiles_dir"] = str(out_dir)
    if args.profile_out:
        shutil.copy(out_dir / "validate.collapsed.txt", args.profile_out)
    return result


def one_ab_run(tree: Path, args: argparse.Namespace, database_url: str, redis_url: str) -> dict:
    env = seeded(tree, database_url, redis_url)
    server, _ = server_for(tree, env, args.port, args.workers)
    base = f"http://127.0.0.1:{args.port}"
    script = validate_script()
    try:
        vt.run_wrk(f"{base}/v1/tools/validate", 3, script)
        groups = Groups(server.pid, database_url)
        before = vt.decision_count(database_url)
        accounted = account(base, groups, args.seconds, script, "/v1/tools/validate", database_url)
        time.sleep(0.5)
        recorded = vt.decision_count(database_url) - before
    finally:
        vt.stop_server(server)
    cpu = accounted["cpu_us_per_request"]
    w = accounted["wrk"]
    return {
        "rps": w["rps"],
        "p99_ms": w["p99_ms"],
        "requests": w["requests"],
        "rows": recorded,
        "worker_us": cpu["uvicorn workers"],
        "pg_us": cpu["PostgreSQL backends (this database)"],
        "app_us": round(cpu["uvicorn workers"] + cpu["PostgreSQL backends (this database)"], 1),
        "recorded": w["requests"] <= recorded <= w["requests"] + vt.CONNECTIONS and w["non_2xx"] == 0,
        "load": os.getloadavg()[0],
    }


def tree_of(ref: str, made: list[Path]) -> Path:
    """A directory as it is (a worktree with a lever applied), or a commit checked out for the run."""
    if Path(ref).is_dir():
        return Path(ref).resolve()
    tree = Path(tempfile.mkdtemp(prefix="veto-profile-ab-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), ref], cwd=ROOT, check=True)
    made.append(tree)
    return tree


def run_ab(args: argparse.Namespace, database_url: str, redis_url: str) -> dict:
    made: list[Path] = []
    baseline = tree_of(args.ab, made)
    other = tree_of(args.b, made) if args.b else ROOT
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    try:
        for pair in range(1, args.pairs + 1):
            order = [("A", baseline), ("B", other)] if pair % 2 else [("B", other), ("A", baseline)]
            for side, tree in order:
                r = one_ab_run(tree, args, database_url, redis_url)
                runs[side].append(r)
                print(
                    f"pair {pair} {side}: {r['rps']:.0f}/s p99 {r['p99_ms']:.1f} ms, worker {r['worker_us']:.0f} µs, "
                    f"pg {r['pg_us']:.0f} µs per request, recorded {r['recorded']}, load {r['load']:.2f}",
                    flush=True,
                )
    finally:
        for tree in made:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    ratios = {}
    for key in ("rps", "p99_ms", "worker_us", "pg_us", "app_us"):
        q = [b[key] / a[key] for a, b in zip(runs["A"], runs["B"], strict=True)]
        ratios[key] = {
            "median": round(statistics.median(q), 3),
            "min": round(min(q), 3),
            "max": round(max(q), 3),
            "A_median": statistics.median(a[key] for a in runs["A"]),
            "B_median": statistics.median(b[key] for b in runs["B"]),
        }
    return {
        "A": args.ab,
        "B": args.b or f"this checkout ({git_commit(ROOT)})",
        "runs": runs,
        "B_over_A": ratios,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--port", type=int, default=0, help="the server's port (default: a free one)")
    parser.add_argument(
        "--rate", type=int, default=500, help="samples per second (of CPU time for --sampler cpu)"
    )
    parser.add_argument(
        "--sampler",
        choices=["cpu", "py-spy"],
        default="cpu",
        help="cpu: on CPU time, in the workers (default); py-spy: wall-clock, counts runnable as busy",
    )
    parser.add_argument(
        "--perf",
        action=argparse.BooleanOptionalAction,
        default=shutil.which("perf") is not None,
        help="also perf-profile the PostgreSQL backends (default: when perf is installed)",
    )
    parser.add_argument("--quick", action="store_true", help="5 s runs (a smoke run)")
    parser.add_argument(
        "--ab",
        metavar="COMMIT_OR_DIR",
        help="interleaved A/B: this commit's (or directory's) server (A) against B",
    )
    parser.add_argument(
        "--tree", metavar="COMMIT_OR_DIR", help="profile this commit's server (default: this checkout)"
    )
    parser.add_argument("--b", metavar="COMMIT_OR_DIR", help="with --ab: B (default: this checkout)")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--tag", help="with --ab: a name for the lever, in the default output file's name")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile-out", type=Path, help="keep validate's collapsed stacks here")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 5
        args.pairs = min(args.pairs, 1)
    if args.port == 0:
        args.port = vt.free_port()
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install -y wrk", file=sys.stderr)
        return 2
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veto_bench")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    today = dt.date.today().isoformat()
    started = time.time()
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        pg_settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("synchronous_commit", "fsync", "wal_sync_method", "commit_delay", "shared_buffers")
        }
    if args.ab:
        result = run_ab(args, database_url, redis_url)
        default_out = ROOT / "benchmarks/results" / f"profile-validate-ab-{today}-{args.tag or 'run'}.json"
    else:
        result = run_profile(args, database_url, redis_url)
        default_out = ROOT / "benchmarks/results" / f"profile-validate-{today}.json"
    result = {
        "machine": vt.machine() | {"load_average_at_end": os.getloadavg()},
        "commit": git_commit(ROOT),
        "postgresql_settings": pg_settings,
        "workers": args.workers,
        "connections": vt.CONNECTIONS,
        "seconds_per_run": args.seconds,
        "wall_seconds": round(time.time() - started),
        **result,
    }
    out = args.json or default_out
    if not args.ab:
        result["goals"] = goals_of(result)
    if not args.ab and args.profile_out is None:
        collapsed = Path(result["profiles_dir"]) / "validate.collapsed.txt"
        shutil.copy(collapsed, out.with_suffix(".collapsed.txt"))
        result["collapsed_stacks"] = out.with_suffix(".collapsed.txt").name
    if not args.ab:
        shutil.rmtree(result.pop("profiles_dir"), ignore_errors=True)  # perf data, per-worker stacks
    out.write_text(json.dumps(result, indent=2))
    if not args.ab:
        for target in ("healthz", "validate"):
            r = result[target]
            print(
                f"\n{target}: {r['accounting']['wrk']['rps']:.0f}/s (accounting run), "
                f"{r['profile']['wrk']['rps']:.0f}/s (profiled run); µs of CPU per request:"
            )
            for name, value in r["us_per_request"].items():
                print(f"  {value:8.1f}  {name}")
        if "postgres_share" in result["validate"]["profile"]:
            print(
                "\nPostgreSQL backends, inclusive shares:",
                result["validate"]["profile"]["postgres_share"]["inclusive_share"],
            )
        print("\nvalidate backends' states:", result["validate"]["accounting"].get("backend_states"))
    else:
        print(json.dumps(result["B_over_A"], indent=2))
    print(f"\nwritten to {out}; load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
