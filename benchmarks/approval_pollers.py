#!/usr/bin/env python
"""1,000 concurrent pollers on GET /v1/approvals/{id}, and the hand-off from resolve to a long-poll.

What it does (issue 4's benchmark; figures recorded in README "Performance"):

1. Creates a fresh PostgreSQL database (DATABASE_URL, default .../veto_bench_approvals),
   migrates, seeds the demo team, key and rule set, and starts the real server as production
   does (``python -m veto_cloud.serve``, DEBUG off, PostgreSQL and Redis, --workers processes).
2. Raises --pollers approvals through the API (POST /v1/tools/validate with a PII export, which
   the demo rules send to the compliance group).
3. SDK-style polling: every poller GETs its approval every 2 s (the SDK's default interval)
   for --seconds; counts answers and errors, and the latency of each GET.
4. Long-polls: every poller holds GET ...?wait=60 open at once; then approvals are resolved
   through POST /v1/approvals/{id}/resolve (10 at a time), and each poller notes when its
   answer arrived. Hand-off = answer arrival - the resolve's response (and - its request).

The load comes from this separate process (asyncio + aiohttp, one connection per poller) on
the same two cores as the server, PostgreSQL and Redis.

Usage:  .venv/bin/python benchmarks/approval_pollers.py [--pollers 1000] [--workers 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_throughput import (  # noqa: E402
    API_KEY,
    APPROVER_KEY,
    free_port,
    machine,
    seeded_environment,
    start_server,
    stop_server,
)

PII_EXPORT = {
    "tool_name": "run_data_export",
    "arguments": {"bucket": "internal-reports", "include_pii": True},
    "context": {"agent_id": "bench-agent", "session_id": "bench"},
}
HEADERS = {"X-Veto-API-Key": API_KEY, "Content-Type": "application/json"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summary_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p95_ms": round(percentile(values, 0.95) * 1000, 2),
        "p99_ms": round(percentile(values, 0.99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


async def raise_approvals(session: aiohttp.ClientSession, base: str, count: int) -> list[str]:
    semaphore = asyncio.Semaphore(32)

    async def one() -> str:
        async with semaphore:
            async with session.post(
                f"{base}/v1/tools/validate", json=PII_EXPORT, headers=HEADERS
            ) as response:
                body = await response.json()
                assert body["decision"] == "require_approval", body
                return str(body["approval_id"])

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def sdk_style_polling(
    session: aiohttp.ClientSession, base: str, ids: list[str], seconds: float
) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + seconds

    async def poller(index: int, approval_id: str) -> None:
        await asyncio.sleep(2.0 * index / len(ids))  # spread the first polls over one interval
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                async with session.get(f"{base}/v1/approvals/{approval_id}", headers=HEADERS) as response:
                    body = await response.json()
                    if response.status != 200 or body.get("status") != "pending":
                        errors.append(f"{response.status} {body}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(repr(exc))
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - started)))

    started = time.monotonic()
    await asyncio.gather(*(poller(i, approval_id) for i, approval_id in enumerate(ids)))
    elapsed = time.monotonic() - started
    return {
        "pollers": len(ids),
        "requests": len(latencies),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "errors": len(errors),
        "first_errors": errors[:5],
        **summary_ms(latencies),
    }


async def long_poll_hand_off(
    session: aiohttp.ClientSession, resolver: aiohttp.ClientSession, base: str, ids: list[str]
) -> dict:
    answered_at: dict[str, float] = {}
    errors: list[str] = []
    connected = asyncio.Event()
    waiting = 0

    async def poller(approval_id: str) -> None:
        nonlocal waiting
        try:
            async with session.get(f"{base}/v1/approvals/{approval_id}?wait=60", headers=HEADERS) as response:
                waiting += 1
                if waiting == len(ids):
                    connected.set()
                body = await response.json()
                answered_at[approval_id] = time.monotonic()
                if response.status != 200 or body.get("status") != "approved":
                    errors.append(f"{response.status} {body.get('status')}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(repr(exc))

    pollers = [asyncio.create_task(poller(approval_id)) for approval_id in ids]
    # Response headers arrive only with the answer, so "connected" means the requests are sent;
    # give the server a moment to have all of them waiting.
    await asyncio.sleep(3.0)
    resolve_sent: dict[str, float] = {}
    resolve_done: dict[str, float] = {}
    semaphore = asyncio.Semaphore(10)

    async def resolve(approval_id: str) -> None:
        async with semaphore:
            resolve_sent[approval_id] = time.monotonic()
            async with resolver.post(
                f"{base}/v1/approvals/{approval_id}/resolve",
                json={"action": "approve", "resolvedBy": "alice"},
                headers={**HEADERS, "X-Veto-API-Key": APPROVER_KEY},
            ) as response:
                await response.read()
                resolve_done[approval_id] = time.monotonic()
                if response.status != 200:
                    errors.append(f"resolve {response.status}")

    started = time.monotonic()
    await asyncio.gather(*(resolve(approval_id) for approval_id in ids))
    await asyncio.wait_for(asyncio.gather(*pollers), 90)
    elapsed = time.monotonic() - started
    from_response = [answered_at[i] - resolve_done[i] for i in ids if i in answered_at and i in resolve_done]
    from_request = [answered_at[i] - resolve_sent[i] for i in ids if i in answered_at and i in resolve_sent]
    return {
        "long_pollers": len(ids),
        "answered": len(answered_at),
        "errors": len(errors),
        "first_errors": errors[:5],
        "resolves_per_second": round(len(resolve_done) / elapsed, 1),
        # Negative when the answer beat the resolve's own response: the event goes out at commit.
        "hand_off_after_resolve_response": summary_ms(from_response)
        | {"min_ms": round(min(from_response) * 1000, 2)},
        "hand_off_after_resolve_request": summary_ms(from_request),
    }


def _session() -> aiohttp.ClientSession:
    # A fresh pool per phase: a connection idle past uvicorn's 5 s keep-alive is closed by the
    # server, and reusing one the client has not yet seen closed fails with a reset.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0), timeout=aiohttp.ClientTimeout(total=120)
    )


async def drive(base: str, pollers: int, seconds: float) -> dict:
    async with _session() as session:
        ids = await raise_approvals(session, base, pollers)
    async with _session() as session:
        polling = await sdk_style_polling(session, base, ids, seconds)
    async with _session() as pollers_session, _session() as resolver_session:
        hand_off = await long_poll_hand_off(pollers_session, resolver_session, base, ids)
    return {"sdk_style_polling": polling, "long_poll": hand_off}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pollers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veto_bench_approvals")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    env = seeded_environment(database_url, redis_url)
    port = free_port()
    env.update(PORT=str(port), WEB_CONCURRENCY=str(args.workers))
    base = f"http://127.0.0.1:{port}"
    server, log = start_server([sys.executable, "-m", "veto_cloud.serve"], env, base)
    try:
        results = asyncio.run(drive(base, args.pollers, args.seconds))
    except Exception:
        print(f"server log: {log}", file=sys.stderr)
        raise
    finally:
        stop_server(server)
    report = {"machine": machine(), "workers": args.workers, **results}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = results["sdk_style_polling"]["errors"] or results["long_poll"]["errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
