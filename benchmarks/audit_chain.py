#!/usr/bin/env python
"""The audit chain under load: append throughput, verify speed, and export memory.

1. **Append throughput** (``--part append``): runs ``validate_throughput.py`` (wrk, 32 connections,
   2 uvicorn workers: every validate call is a chained, durable decision) on a fresh database,
   then checks what the parallel writers (two processes, many connections) left: each team's
   sequence gapless from 1, and ``verify_audit`` OK.
2. **Verify speed** (``--part verify``): a valid chain of ``--rows`` (1,000,000) decisions made
   with ``audit.chain.link_rows`` and COPYed into ``audit_decisionrecord`` for the demo team (its
   ``ChainHead`` set), then ``manage.py verify_audit --team demo`` timed.
3. **Export memory** (``--part export``, after verify): the same chain streamed over HTTP from
   the real server (one uvicorn worker, so one process to watch) as JSON and as CSV; the worker's
   RSS before, sampled during, and its peak (``VmHWM``) after. The CSV is checked on the fly, every
   entry, with the SDK's ``compute_chain_hash``.

Usage:  .venv/bin/python benchmarks/audit_chain.py [--part all|append|verify|export] [--rows N]
Needs:  PostgreSQL (DATABASE_URL, default .../veto_bench_audit), Redis, wrk for the append part.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_throughput import (  # noqa: E402
    API_KEY,
    ROOT,
    free_port,
    machine,
    seeded_environment,
    start_server,
    stop_server,
)

sys.path.insert(0, str(ROOT))
from audit.chain import Head, link_rows  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
COPY_COLUMNS = (
    "id, team_id, tool_name, arguments, context, decision, rule_id, rule_name, reason, severity, mode, "
    "enforcement, source, latency_ms, rule_set_version, approval_id, api_key_id, created_at, "
    "sequence, record, prev_hash, hash, rules_hash, model, environment, agent_id, session_id"
)


def manage_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of the server and manage.py on an already seeded database."""
    return dict(
        os.environ,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        DEBUG="false",
        SECRET_KEY="benchmark-secret-key",
        DJANGO_SETTINGS_MODULE="veto_cloud.settings.base",
        LOG_LEVEL="WARNING",
        **extra,
    )


def verify_audit(env: dict[str, str], team: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "manage.py", "verify_audit", "--team", team],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, (done.stdout + done.stderr).strip()


# --- 1. append ----------------------------------------------------------------------------------


def part_append(database_url: str, redis_url: str) -> dict:
    env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url)
    out = RESULTS / "audit_chain_append_validate.json"
    subprocess.run(
        [sys.executable, "benchmarks/validate_throughput.py", "--json", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
    )
    validate = json.loads(out.read_text())
    with psycopg.connect(database_url) as conn:
        teams = conn.execute(
            "SELECT t.slug, count(*), min(d.sequence), max(d.sequence), h.sequence "
            "FROM audit_decisionrecord d JOIN tenancy_team t ON t.id = d.team_id "
            "JOIN audit_chainhead h ON h.team_id = d.team_id AND h.stream = 'decisions' "
            "GROUP BY t.slug, h.sequence"
        ).fetchall()
    checks = []
    for slug, count, low, high, head in teams:
        seconds, output = verify_audit(manage_env(database_url, redis_url), slug)
        checks.append(
            {
                "team": slug,
                "rows": count,
                "gapless": low == 1 and high == count == head,
                "verify_audit": output,
                "verify_seconds": round(seconds, 2),
            }
        )
    return {
        "validate_rps_median": validate["median"]["validate"]["rps"],
        "validate_p99_ms_median": validate["median"]["validate"]["p99_ms"],
        "every_answer_recorded_no_errors": validate["every_answer_recorded_no_errors"],
        "writers": f"{validate['server']}, {validate['connections']} connections",
        "chains": checks,
    }


# --- 2. verify ----------------------------------------------------------------------------------


def load_chain(database_url: str, rows: int) -> str:
    """A valid chain of ``rows`` decisions for the demo team, COPYed in; returns the head hash."""
    with psycopg.connect(database_url) as conn:
        team_id = conn.execute("SELECT id FROM tenancy_team WHERE slug = 'demo'").fetchone()[0]  # type: ignore[index]
        head = Head(0, "")
        start = datetime.now(UTC) - timedelta(seconds=rows)
        batch_size = 50_000
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY audit_decisionrecord ({COPY_COLUMNS}) FROM STDIN") as copy,
        ):
            for first in range(0, rows, batch_size):
                batch = []
                for n in range(first, min(first + batch_size, rows)):
                    decision = (
                        "allow",
                        "allow",
                        "allow",
                        "allow",
                        "allow",
                        "allow",
                        "allow",
                        "allow",
                        "deny",
                        "require_approval",
                    )[n % 10]
                    batch.append(
                        {
                            "id": uuid.uuid4(),
                            "team_id": team_id,
                            "tool_name": f"tool_{n % 20}",
                            "arguments": {"bucket": "internal-reports", "rows": n, "include_pii": n % 7 == 0},
                            "context": {
                                "session_id": f"s-{n % 1000}",
                                "agent_id": "agent-7",
                                "user_id": "u-42",
                            },
                            "decision": decision,
                            "rule_id": "bucket_allowlist" if decision != "allow" else "",
                            "reason": "Exports restricted to internal-* S3 buckets"
                            if decision != "allow"
                            else "",
                            "enforcement": "strict",
                            "source": "server",
                            "rule_set_version": 1,
                            "approval_id": None,
                            "created_at": start + timedelta(seconds=n),
                        }
                    )
                heads = link_rows(batch, {team_id: head})
                head = heads.get(team_id, head)
                for r in batch:
                    copy.write_row(
                        (
                            r["id"],
                            r["team_id"],
                            r["tool_name"],
                            json.dumps(r["arguments"]),
                            json.dumps(r["context"]),
                            r["decision"],
                            r["rule_id"],
                            "",
                            r["reason"],
                            "",
                            "deterministic",
                            "strict",
                            "server",
                            0.1,
                            1,
                            None,
                            None,
                            r["created_at"],
                            r["sequence"],
                            r["record"],
                            r["prev_hash"],
                            r["hash"],
                            "",  # rules_hash, and the context columns the explorer filters on
                            "",
                            "",
                            r["context"]["agent_id"],
                            r["context"]["session_id"],
                        )
                    )
                print(f"  {first + len(batch):,} rows", end="\r", flush=True)
        conn.execute(
            "INSERT INTO audit_chainhead (team_id, stream, sequence, hash) VALUES (%s, 'decisions', %s, %s) "
            "ON CONFLICT (team_id, stream) DO UPDATE SET sequence = EXCLUDED.sequence, hash = EXCLUDED.hash",
            (team_id, head.sequence, head.hash),
        )
        conn.commit()
        print(f"\n  loaded {rows:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE audit_decisionrecord")
        return head.hash


def part_verify(database_url: str, redis_url: str, rows: int) -> dict:
    env = seeded_environment(database_url, redis_url)
    head_hash = load_chain(database_url, rows)
    runs = []
    for _ in range(2):
        seconds, output = verify_audit(env, "demo")
        runs.append({"seconds": round(seconds, 1), "output": output})
        print(f"  verify_audit: {seconds:.1f} s: {output}", flush=True)
    ok = all(r["output"] == f"OK {rows} records, head {head_hash}" for r in runs)
    best = min(r["seconds"] for r in runs)
    return {"rows": rows, "runs": runs, "ok": ok, "best_seconds": best, "rows_per_second": round(rows / best)}


# --- 3. export ----------------------------------------------------------------------------------


def status_kib(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def stream_export(base: str, pid: int, file_format: str, check) -> dict:
    before = status_kib(pid)
    peak_rss = before["VmRSS"]
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_rss
        while not stop.is_set():
            peak_rss = max(peak_rss, status_kib(pid)["VmRSS"])
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    size = 0
    first_byte = None
    with httpx.stream(
        "GET",
        f"{base}/v1/decisions/export",
        params={"format": file_format},
        headers={"X-Veto-API-Key": API_KEY},
        timeout=600,
    ) as response:
        response.raise_for_status()
        first_byte = time.perf_counter() - started  # the headers: the server answered
        checked = check(response)
        size = response.num_bytes_downloaded
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    after = status_kib(pid)
    return {
        "format": file_format,
        "bytes": size,
        "seconds": round(seconds, 1),
        "mib_per_second": round(size / 2**20 / seconds, 1),
        "headers_after_seconds": round(first_byte, 3),
        "entries_checked": checked,
        "server_rss_before_mib": round(before["VmRSS"] / 1024, 1),
        "server_peak_rss_during_mib": round(peak_rss / 1024, 1),
        "server_vmhwm_before_mib": round(before["VmHWM"] / 1024, 1),
        "server_vmhwm_after_mib": round(after["VmHWM"] / 1024, 1),
    }


def check_csv(response: httpx.Response) -> int:
    """Every entry with the SDK's compute_chain_hash, linked, while it streams in."""
    from veto.audit.chain import compute_chain_hash

    lines = (line + "\n" for line in response.iter_lines())
    reader = csv.reader(lines)
    assert next(reader) == ["sequence", "record", "prev_hash", "hash", "id", "createdAt"]
    prev, n = "", 0
    for n, (sequence, record, prev_hash, digest, _id, _at) in enumerate(reader, start=1):
        assert int(sequence) == n and prev_hash == prev, f"broken link at {n}"
        assert compute_chain_hash(prev_hash, json.loads(record)) == digest, f"record changed at {n}"
        prev = digest
    return n


def check_json_tail(response: httpx.Response) -> int:
    """Count entries without holding the body: the JSON's shape is checked at its end."""
    marker = b'{"sequence":'
    tail = b""
    entries = 0
    for chunk in response.iter_bytes():
        # With the previous chunk's last bytes: a marker may be split across chunks.
        entries += (tail[-(len(marker) - 1) :] + chunk).count(marker)
        tail = (tail + chunk)[-4096:]
    assert tail.endswith(b'"}') and b'"publicKey":"' in tail, tail[-200:]
    return entries


def part_export(database_url: str, redis_url: str) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = manage_env(database_url, redis_url, PORT=str(port), WEB_CONCURRENCY="1")
    server, _log = start_server([sys.executable, "-m", "veto_cloud.serve"], env, base)
    try:
        # Warm the Django/DRF path so its imports do not count as the export's memory.
        httpx.get(
            f"{base}/v1/decisions?limit=1", headers={"X-Veto-API-Key": API_KEY}, timeout=30
        ).raise_for_status()
        results = []
        for file_format, check in (("json", check_json_tail), ("csv", check_csv)):
            result = stream_export(base, server.pid, file_format, check)
            print(f"  export {file_format}: {json.dumps(result)}", flush=True)
            results.append(result)
        return {"server": "uvicorn, 1 worker (python -m veto_cloud.serve)", "exports": results}
    finally:
        stop_server(server)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["all", "append", "verify", "export"], default="all")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=RESULTS / "audit_chain.json")
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veto_bench_audit")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    report: dict = json.loads(args.json.read_text()) if args.json.exists() else {}
    report["machine"] = machine()
    if args.part in ("all", "append"):
        report["append"] = part_append(database_url, redis_url)
        print(json.dumps(report["append"], indent=2), flush=True)
    big_url = database_url + "_1m"
    if args.part in ("all", "verify"):
        report["verify"] = part_verify(big_url, redis_url, args.rows)
    if args.part in ("all", "export"):
        report["export"] = part_export(big_url, redis_url)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
