#!/usr/bin/env python
"""Validate throughput and latency against the same server's /healthz, every decision durable.

What it does (issue 2's benchmark; figures recorded in README "Performance"):

1. Creates a fresh PostgreSQL database (DATABASE_URL, default .../veto_bench), migrates,
   seeds the demo team, key and rule set.
2. Starts the real server exactly as production does (``python -m veto_cloud.serve``, or
   granian for comparison) with DEBUG off, on PostgreSQL and Redis.
3. Drives it with wrk (a separate, C load generator: the client must not be the bottleneck)
   from 32 concurrent keep-alive connections: /healthz, then POST /v1/tools/validate with a
   mix of calls (80 % allow, 10 % deny, 10 % require_approval), then an authenticated
   Django/DRF endpoint for context. Each after a warm-up, repeated --runs times.
4. Checks durability: the decision rows added during each validate run must cover every
   answered request (wrk counts completed requests; up to one in-flight request per
   connection may be recorded but not counted).

Usage:  make bench   or   .venv/bin/python benchmarks/validate_throughput.py [--server granian] [--workers 2]
Needs:  wrk (apt-get install wrk), PostgreSQL and Redis reachable via DATABASE_URL / REDIS_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import psycopg

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-key-0123456789abcdefghijklmnopqrstuvwxyz"
# alice's personal key (seed_demo): approvals are resolved by a person, not the team's key.
APPROVER_KEY = "bench-approver-key-0123456789abcdefghijklmnop"
CONNECTIONS = 32

VALIDATE_BODIES = [
    *[
        {
            "tool_name": "run_data_export",
            "arguments": {"bucket": "internal-reports", "rows": 1000, "include_pii": False},
            "context": {
                "session_id": "s-1",
                "agent_id": "agent-7",
                "user_id": "u-42",
                "custom": {"environment": "staging"},
            },
        }
    ]
    * 8,
    {
        "tool_name": "run_data_export",
        "arguments": {"bucket": "s3://public-dump", "rows": 10},
        "context": {"session_id": "s-2", "agent_id": "agent-7"},
    },
    {
        "tool_name": "deploy_workflow",
        "arguments": {"definition": '{"steps": []}'},
        "context": {"session_id": "s-3", "agent_id": "agent-9", "custom": {"environment": "production"}},
    },
]


def lua_for(path: str, bodies: list[dict], headers: dict[str, str]) -> str:
    header_table = ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())
    literals = ",\n  ".join("[=[" + json.dumps(b) + "]=]" for b in bodies)
    return f"""
local bodies = {{
  {literals}
}}
local requests = {{}}
local i = 0
init = function(args)
  for n, body in ipairs(bodies) do
    requests[n] = wrk.format("POST", "{path}", {{{header_table}}}, body)
  end
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
"""


def run_wrk(
    url: str, seconds: int, script: Path | None = None, headers: dict[str, str] | None = None
) -> dict:
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> dict:
    percentiles = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M)}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50_ms": percentiles["50"],
        "p90_ms": percentiles["90"],
        "p99_ms": percentiles["99"],
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def fresh_database(url: str) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def decision_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM audit_decisionrecord").fetchone()[0]  # type: ignore[index]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split(
        " sha="
    )[0]
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "postgresql": pg,
        "redis": redis.strip(),
        "kernel": platform.release(),
    }


def seeded_environment(database_url: str, redis_url: str) -> dict[str, str]:
    """A fresh, migrated PostgreSQL database with the demo team, key and rules; the server's env."""
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        DEBUG="false",
        SECRET_KEY="benchmark-secret-key",
        DJANGO_SETTINGS_MODULE="veto_cloud.settings.base",
        LOG_LEVEL="WARNING",
        VETO_DEMO_API_KEY=API_KEY,
        VETO_DEMO_APPROVER_API_KEY=APPROVER_KEY,
        VETO_DEMO_PASSWORD="benchmark-password",
    )
    print(f"preparing a fresh database at {database_url}", flush=True)
    fresh_database(database_url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    subprocess.run(
        [sys.executable, "manage.py", "seed_demo"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    return env


def start_server(command: list[str], env: dict[str, str], base: str) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the server in its own process group; return once /healthz answers (or exit 1)."""
    log = Path(tempfile.mkdtemp()) / "server.log"
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    for _ in range(300):
        try:
            if urllib.request.urlopen(f"{base}/healthz", timeout=1).status == 200:
                return server, log
        except OSError:
            time.sleep(0.1)
    os.killpg(server.pid, signal.SIGTERM)
    print(log.read_text(), file=sys.stderr)
    sys.exit(1)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=20)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install -y wrk", file=sys.stderr)
        return 2
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veto_bench")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    if not database_url.startswith("postgres"):
        print("the benchmark runs on PostgreSQL: set DATABASE_URL to a postgres:// URL", file=sys.stderr)
        return 2

    env = seeded_environment(database_url, redis_url)

    port = free_port()
    if args.server == "uvicorn":
        command = [sys.executable, "-m", "veto_cloud.serve"]
        env.update(PORT=str(port), WEB_CONCURRENCY=str(args.workers))
    else:
        command = [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--workers",
            str(args.workers),
            "--port",
            str(port),
            "--log-level",
            "warning",
            "veto_cloud.asgi:application",
        ]
    base = f"http://127.0.0.1:{port}"
    server, log = start_server(command, env, base)
    try:
        script = Path(tempfile.mkdtemp()) / "validate.lua"
        script.write_text(
            lua_for(
                "/v1/tools/validate",
                VALIDATE_BODIES,
                {"Content-Type": "application/json", "X-Veto-API-Key": API_KEY},
            )
        )
        auth = {"X-Veto-API-Key": API_KEY}
        print("warming up", flush=True)
        run_wrk(f"{base}/healthz", 3)
        run_wrk(f"{base}/v1/tools/validate", 3, script)
        run_wrk(f"{base}/v1/tools", 2, headers=auth)

        results: dict[str, list[dict]] = {"healthz": [], "validate": [], "django_api": []}
        for run in range(1, args.runs + 1):
            results["healthz"].append(run_wrk(f"{base}/healthz", args.seconds))
            before = decision_count(database_url)
            outcome = run_wrk(f"{base}/v1/tools/validate", args.seconds, script)
            time.sleep(0.5)  # let the last in-flight commits land before counting
            outcome["rows_recorded"] = decision_count(database_url) - before
            results["validate"].append(outcome)
            results["django_api"].append(run_wrk(f"{base}/v1/tools", args.seconds, headers=auth))
            print(
                f"run {run}: healthz {results['healthz'][-1]['rps']:.0f}/s, validate {outcome['rps']:.0f}/s "
                f"p99 {outcome['p99_ms']:.1f} ms, rows {outcome['rows_recorded']} for {outcome['requests']} answers",
                flush=True,
            )
    finally:
        stop_server(server)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    validate_ok = all(
        r["socket_errors"] == 0
        and r["non_2xx"] == 0
        and r["requests"] <= r["rows_recorded"] <= r["requests"] + CONNECTIONS
        for r in results["validate"]
    )
    summary = {
        "machine": machine(),
        "server": f"{args.server}, {args.workers} worker(s)",
        "connections": CONNECTIONS,
        "seconds_per_run": args.seconds,
        "runs": results,
        "median": {
            name: {key: median(name, key) for key in ("rps", "p50_ms", "p90_ms", "p99_ms")}
            for name in results
        },
        "validate_vs_healthz": median("validate", "rps") / median("healthz", "rps"),
        "every_answer_recorded_no_errors": validate_ok,
    }
    print(json.dumps(summary, indent=2))
    print()
    print("| endpoint | req/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (
        ("healthz", "GET /healthz (gateway)"),
        ("validate", "POST /v1/tools/validate"),
        ("django_api", "GET /v1/tools (Django/DRF, for context)"),
    ):
        m = summary["median"][name]
        print(f"| {label} | {m['rps']:.0f} | {m['p50_ms']:.1f} | {m['p90_ms']:.1f} | {m['p99_ms']:.1f} |")
    print(
        f"\nvalidate / healthz = {summary['validate_vs_healthz']:.2f}; "
        f"every answer recorded, zero errors: {validate_ok}"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if validate_ok else 1


if __name__ == "__main__":
    sys.exit(main())
