#!/usr/bin/env python
"""What a per-tool policy's session constraints and rate limits add to validate (issue 15).

Validate counts a call against its tool policy's ``sessionConstraints`` with one Lua script in
Redis (``policies.session_counters``: every limit the call moves, checked and applied in one
step), and against the policy's own ``rateLimits`` with the rule sets' limiter (a second
script). This measures what that costs through the real server, beside a tool whose policy has
only constraints (nothing counted), and what the script costs alone.

1. One fresh PostgreSQL database (DATABASE_URL), migrated and seeded with the demo team, key and
   rule set, and an emptied Redis database (REDIS_URL); the server started as
   ``validate_throughput.py`` starts it (``python -m veto_cloud.serve``, DEBUG off, PostgreSQL
   and Redis, ``--workers`` processes): its functions, imported.
2. Five tools, one per variant, each with its own policy (created through the service layer
   before the server starts, so every worker serves every variant all along and nothing is
   republished between rounds). The demo rule set has no rule for them: the rule set allows.
   Every policy has the same constraint (``amount`` at most 1,000,000, which every call passes);
   each variant adds to the one before it, with limits no run comes near:

   A. constraints only: no session state (the baseline);
   B. + ``sessionConstraints: {maxCalls}``: one field in one script call;
   C. + ``spendArgument: amount`` with a ``budget`` and two ``cumulativeLimits``: four fields,
      still one script call;
   D. + a ``counters`` entry the tool raises: five fields, one script call;
   E. + the policy's own ``rateLimits`` (session scope): a second script, the limiter's.

3. Per round, each variant in turn (the order rotated from round to round), wrk at 32
   connections for ``--seconds``: req/s, p50, p99. Each request is the tool's call with the
   same arguments and a session id drawn at random from ``--sessions`` (the wrk Lua script
   draws it), so each session's counts stay far below every limit. The delta against A is
   taken within each round (the variants of one round share the machine's moment), in µs per
   request from throughput (1 / req/s at 32 connections: the server's time per request with
   its workers busy) and as a ratio; the medians over rounds are reported.
4. Checks (the variants really counted): every answer 200 and allow, a decision row per answer
   (per run: rows added for that tool cover wrk's count), and at the end the counts in Redis
   summed over every session equal, per tool, the rows recorded times what one call moves
   (B: calls; C, D, E: calls, the amount, the cumulative arguments; D, E: the counter; E: the
   rate-limit entries), with A counting nothing, over as many sessions as were drawn.
5. The script's own cost, in this process: ``--micro-calls`` sequential ``count()`` calls from
   one asyncio loop (the server's client, ``common.redis.async_redis``) with B's, C's and D's
   limits, the limiter's ``hit()`` with E's, and a PING on the same client for the round trip
   alone, in µs per call; and the same script on the bare client, by its text (EVAL, what
   ``count()`` sends with every call) and by its SHA (EVALSHA): what the text and what
   ``count()``'s own Python cost. The whole process runs as it was started (``nice`` included).

    nice -n 19 .venv/bin/python benchmarks/session_constraints.py [--quick] [--rounds 5]
        [--seconds 8] [--sessions 1000] [--workers 2] [--note "..."] [--out path.json]

DATABASE_URL (default .../veto_bench_session) and REDIS_URL (default Redis db 14, as
validate_throughput) choose the stores; both are emptied. Goal (issue 15): the session
constraints of C (four limits, one script call) cost at most 25 % more time per request than
A at 32 connections; the µs per call each variant adds is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validate_throughput import (  # noqa: E402
    API_KEY,
    CONNECTIONS,
    ROOT,
    free_port,
    machine,
    parse_wrk,
    seeded_environment,
    start_server,
    stop_server,
)

from policies.engine.document import MAX_RATE_LIMIT_CALLS, MAX_RATE_LIMIT_WINDOW_SECONDS  # noqa: E402
from policies.engine.session_constraints import MAX_AMOUNT, MAX_CALLS_LIMIT  # noqa: E402

VALIDATE_PATH = "/v1/tools/validate"
HEADERS = {"Content-Type": "application/json", "X-Veto-API-Key": API_KEY}
ACTOR_NAME = "session_constraints_benchmark"
AGENT_ID = "bench-agent"
# What every call sends: exact in binary floating point, so the sums in Redis can be compared
# with the rows times these without rounding.
ARGUMENTS = {"amount": 12.5, "items": 3, "weight": 0.25}
CUMULATIVE_ARGUMENTS = ("items", "weight")
COUNTER = "opened"
# The goal: C's time per request at most this many times A's.
GOAL_RATIO = 1.25


@dataclass(frozen=True)
class Variant:
    key: str
    what: str
    tool: str
    document: dict[str, Any]
    # Field of the session's hash -> what one call adds to it.
    moves: dict[str, float] = field(default_factory=dict)
    rate_limited: bool = False


def variants() -> list[Variant]:
    def policy(tool: str, **extra: Any) -> dict[str, Any]:
        return {
            "toolName": tool,
            "mode": "deterministic",
            "constraints": [{"argumentName": "amount", "enabled": True, "maximum": 1_000_000}],
            **extra,
        }

    def spending() -> dict[str, Any]:
        return {
            "maxCalls": MAX_CALLS_LIMIT,
            "spendArgument": "amount",
            "budget": MAX_AMOUNT,
            "cumulativeLimits": [
                {"argumentName": name, "maxValue": MAX_AMOUNT} for name in CUMULATIVE_ARGUMENTS
            ],
        }

    def spent(tool: str) -> dict[str, float]:
        return {
            f"calls|{tool}": 1.0,
            f"spend|{tool}": float(ARGUMENTS["amount"]),
            **{f"sum|{tool}|{name}": float(ARGUMENTS[name]) for name in CUMULATIVE_ARGUMENTS},
        }

    def counting(tool: str) -> dict[str, Any]:
        return {**spending(), "counters": {COUNTER: {"increment": [tool], "max": MAX_CALLS_LIMIT}}}

    a, b, c, d, e = (f"bench_session_{key}" for key in "abcde")
    rate_limits = [
        {"scope": "session", "windowSeconds": MAX_RATE_LIMIT_WINDOW_SECONDS, "maxCalls": MAX_RATE_LIMIT_CALLS}
    ]
    return [
        Variant("A", "constraints only (no session state)", a, policy(a)),
        Variant(
            "B",
            "+ maxCalls",
            b,
            policy(b, sessionConstraints={"maxCalls": MAX_CALLS_LIMIT}),
            {f"calls|{b}": 1.0},
        ),
        Variant(
            "C",
            "+ budget and 2 cumulativeLimits (4 limits, 1 script call)",
            c,
            policy(c, sessionConstraints=spending()),
            spent(c),
        ),
        Variant(
            "D",
            "+ a counter the tool raises (5 limits, 1 script call)",
            d,
            policy(d, sessionConstraints=counting(d)),
            {**spent(d), f"counter|{d}|{COUNTER}": 1.0},
        ),
        Variant(
            "E",
            "+ the policy's rateLimits, session scope (a 2nd script call)",
            e,
            policy(e, sessionConstraints=counting(e), rateLimits=rate_limits),
            {**spent(e), f"counter|{e}|{COUNTER}": 1.0},
            rate_limited=True,
        ),
    ]


def body_of(tool: str, session: str) -> dict[str, Any]:
    """What the SDK's ``validate`` sends for the call in session ``session``."""
    return {
        "tool_name": tool,
        "arguments": ARGUMENTS,
        "context": {"agent_id": AGENT_ID, "session_id": session},
    }


def session_lua(tool: str, sessions: int) -> str:
    """A wrk script sending the tool's call with a session id drawn per request from
    ``sessions``. The requests are formatted once per thread. Each run's seed is its first
    argument plus the thread's number (setup numbers them): with one seed for every run, each
    run would draw the same first ids again and the later ids never."""
    header_table = ", ".join(f'["{k}"] = "{v}"' for k, v in HEADERS.items())
    head, tail = json.dumps(body_of(tool, "@@")).split("@@")
    return f"""
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
local requests = {{}}
init = function(args)
  math.randomseed(tonumber(args[1]) + seed * 7919)
  for n = 1, {sessions} do
    local body = [=[{head}]=] .. "s-" .. n .. [=[{tail}]=]
    requests[n] = wrk.format("POST", "{VALIDATE_PATH}", {{{header_table}}}, body)
  end
end
request = function()
  return requests[math.random(#requests)]
end
"""


def wrk(base: str, script: Path, *, seconds: float) -> dict[str, Any]:
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency"]
    command += ["-s", str(script), f"{base}{VALIDATE_PATH}", "--", str(random.randrange(1, 2**31))]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


def rows_by_tool(database_url: str, tools: list[str]) -> dict[str, dict[str, int]]:
    """tool -> decision -> decision rows."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT tool_name, decision, count(*) FROM audit_decisionrecord WHERE tool_name = ANY(%s) "
            "GROUP BY 1, 2",
            (tools,),
        ).fetchall()
    out: dict[str, dict[str, int]] = {tool: {} for tool in tools}
    for tool, decision, count in found:
        out[tool][decision] = count
    return out


def settled_rows(database_url: str, tool: str) -> int:
    """The tool's decision rows once the count stops moving: requests wrk left in flight when it
    stopped are still answered (and recorded) after it returns."""
    count = sum(rows_by_tool(database_url, [tool])[tool].values())
    for _ in range(50):
        time.sleep(0.3)
        again = sum(rows_by_tool(database_url, [tool])[tool].values())
        if again == count:
            break
        count = again
    return count


def measured_run(database_url: str, base: str, script: Path, tool: str, *, seconds: float) -> dict[str, Any]:
    """One wrk run and the decision rows it added; ``rows_ok``: every answer has its row."""
    before = settled_rows(database_url, tool)
    load_before = [round(x, 2) for x in os.getloadavg()]
    outcome = wrk(base, script, seconds=seconds)
    outcome["rows_recorded"] = settled_rows(database_url, tool) - before
    outcome["rows_ok"] = (
        outcome["socket_errors"] == 0
        and outcome["non_2xx"] == 0
        and outcome["requests"] <= outcome["rows_recorded"] <= outcome["requests"] + CONNECTIONS
    )
    outcome["load_before"] = load_before
    outcome["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return outcome


def sample_answers(port: int, chosen: list[Variant]) -> dict[str, Any]:
    """One call of each tool sent alone: 200, allow, decided by the rule set (no policy refusal)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    answers: dict[str, Any] = {}
    try:
        for variant in chosen:
            connection.request(
                "POST", VALIDATE_PATH, body=json.dumps(body_of(variant.tool, "s-1")), headers=HEADERS
            )
            response = connection.getresponse()
            answer = json.loads(response.read() or b"{}")
            answers[variant.key] = {"status": response.status, "decision": answer.get("decision")}
    finally:
        connection.close()
    return answers


def create_policies(team_id: uuid.UUID, chosen: list[Variant]) -> None:
    from policies.services import tool_policy_create
    from tenancy.actor import Actor

    actor = Actor.process(ACTOR_NAME)
    for variant in chosen:
        tool_policy_create(team_id=team_id, data=variant.document, actor=actor)


def redis_counts(team_id: uuid.UUID, chosen: list[Variant]) -> dict[str, Any]:
    """The session counts in Redis summed over every session of the team, the sessions that hold
    any, and the rate-limit entries per tool."""
    from common.redis import sync_redis

    client = sync_redis()
    totals: dict[str, float] = {}
    sessions = 0
    for key in client.scan_iter(match=f"veto:{{{team_id}}}:session:*", count=1000):
        sessions += 1
        for name, value in client.hgetall(key).items():
            field_name = name.decode() if isinstance(name, bytes) else name
            totals[field_name] = totals.get(field_name, 0.0) + float(value)
    rate_entries: dict[str, int] = {}
    rate_keys: dict[str, int] = {}
    for variant in chosen:
        for key in client.scan_iter(match=f"veto:{{{team_id}}}:rate:*:{variant.tool}", count=1000):
            rate_entries[variant.tool] = rate_entries.get(variant.tool, 0) + int(client.zcard(key))
            rate_keys[variant.tool] = rate_keys.get(variant.tool, 0) + 1
    return {
        "fields": totals,
        "session_hashes": sessions,
        "rate_entries": rate_entries,
        "rate_keys": rate_keys,
    }


def counted_as_expected(
    chosen: list[Variant], rows: dict[str, dict[str, int]], counts: dict[str, Any], sessions: int
) -> dict[str, Any]:
    """Per variant: what Redis holds against what its recorded calls should have moved."""
    checks: dict[str, Any] = {}
    fields: dict[str, float] = counts["fields"]
    for variant in chosen:
        recorded = rows[variant.tool]
        allowed = recorded.get("allow", 0)
        others = {decision: n for decision, n in recorded.items() if decision != "allow"}
        expected = {name: allowed * per_call for name, per_call in variant.moves.items()}
        found = {name: value for name, value in fields.items() if f"|{variant.tool}" in name}
        counted_ok = set(found) == set(expected) and all(
            abs(found[name] - value) <= 1e-6 * max(1.0, value) for name, value in expected.items()
        )
        check: dict[str, Any] = {
            "allow_rows": allowed,
            "other_rows": others,
            "expected": expected,
            "in_redis": found,
            "ok": counted_ok and not others and allowed > 0,
        }
        if variant.rate_limited:
            entries = counts["rate_entries"].get(variant.tool, 0)
            check["rate_limit_entries"] = entries
            check["rate_limit_keys"] = counts["rate_keys"].get(variant.tool, 0)
            check["ok"] = check["ok"] and entries == allowed
        elif counts["rate_entries"].get(variant.tool):
            check["ok"] = False  # a rate limit counted where the policy has none
        checks[variant.key] = check
    # Every session the wrk scripts could draw was drawn (and s-1 by the sample calls).
    checks["sessions"] = {
        "drawn_from": sessions,
        "session_hashes_in_redis": counts["session_hashes"],
        "ok": counts["session_hashes"] == sessions,
    }
    return checks


# -- the script alone -------------------------------------------------------------------------


async def _per_call_us(calls: int, one: Any) -> float:
    for _ in range(min(200, calls)):  # the connection made, the script loaded
        await one()
    started = time.perf_counter()
    for _ in range(calls):
        await one()
    return round((time.perf_counter() - started) * 1e6 / calls, 1)


async def micro(team_id: uuid.UUID, chosen: list[Variant], calls: int) -> dict[str, Any]:
    """Sequential calls from one asyncio loop through the server's own client and code, under
    a team id of its own (its keys are deleted afterwards), best of three passes."""
    from common.redis import async_redis
    from policies.engine import ToolCall
    from policies.engine.session_constraints import tallies_for_call
    from policies.engine.tool_rate_limits import tool_policy_rate_limit_check
    from policies.rate_limiter import rate_limiter
    from policies.selectors import active_tool_policies
    from policies.session_counters import _COUNT, session_counters

    policies = await active_tool_policies(team_id=team_id)
    client = async_redis()
    counters = session_counters()
    own_team = uuid.uuid4()
    figures: dict[str, Any] = {"calls": calls}
    passes: dict[str, list[float]] = {}

    async def ping() -> None:
        await client.ping()

    tasks: dict[str, Any] = {"PING (the round trip alone)": ping}
    for variant in chosen:
        limits = policies.session_limits_for(variant.tool)
        if not limits:
            continue
        policy = policies.by_tool.get(variant.tool)
        if variant.rate_limited and policy is not None:
            # E's session limits are D's: what it adds is the limiter's script.
            call = ToolCall(
                tool_name=variant.tool,
                arguments=ARGUMENTS,
                context={"agent_id": AGENT_ID, "session_id": "micro"},
                now=datetime.now(UTC),
            )
            check = tool_policy_rate_limit_check(variant.tool, str(policy.id), policy.rate_limits, call)

            async def hit(check: Any = check) -> None:
                await rate_limiter().hit(own_team, check)

            tasks[f"rate limiter hit(), 1 limit ({variant.key})"] = hit
            continue
        tallies = tallies_for_call(limits, ARGUMENTS)
        assert isinstance(tallies, list)

        async def count(tallies: Any = tallies) -> None:
            await counters.count(own_team, AGENT_ID, "micro", tallies)

        tasks[f"count(), {len(tallies)} limit(s) ({variant.key})"] = count
        if variant.key == "C":
            # The same script and arguments on the bare client, by its text (what count() sends)
            # and by its SHA: what sending the text costs, and what count()'s own Python costs.
            sha = await client.script_load(_COUNT)
            args: list[Any] = [60_000, "0", len(tallies)]
            for tally in tallies:
                args += [tally.limit.field, repr(tally.delta), repr(float(tally.limit.limit or 0))]
            key = f"veto:{{{own_team}}}:session:micro-sha"

            async def by_text(args: list[Any] = args, key: str = key) -> None:
                await client.eval(_COUNT, 1, key, *args)

            async def by_sha(args: list[Any] = args, key: str = key, sha: str = sha) -> None:
                await client.evalsha(sha, 1, key, *args)

            tasks[f"EVAL of the script, bare client, {len(tallies)} limits (C)"] = by_text
            tasks[f"EVALSHA of the script, bare client, {len(tallies)} limits (C)"] = by_sha
    for _ in range(3):
        for name, task in tasks.items():
            passes.setdefault(name, []).append(await _per_call_us(calls, task))
    figures["us_per_call"] = {name: min(values) for name, values in passes.items()}
    figures["us_per_call_passes"] = passes
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    async for key in client.scan_iter(match=f"veto:{{{own_team}}}:*"):
        await client.delete(key)
    return figures


# -- figures -----------------------------------------------------------------------------------


def median_of(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def summarize(chosen: list[Variant], rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per variant: the medians over rounds, and its delta against A within each round (in µs
    per request from throughput, and as a ratio of time per request), median over rounds."""
    out: dict[str, Any] = {}
    for variant in chosen:
        runs = [r[variant.key] for r in rounds if variant.key in r]
        deltas = [
            1e6 / r[variant.key]["rps"] - 1e6 / r["A"]["rps"] for r in rounds if variant.key in r and "A" in r
        ]
        ratios = [r["A"]["rps"] / r[variant.key]["rps"] for r in rounds if variant.key in r and "A" in r]
        rps = median_of([run["rps"] for run in runs])
        out[variant.key] = {
            "what": variant.what,
            "tool": variant.tool,
            "rps": round(rps, 1),
            "us_per_request": round(1e6 / rps, 1),
            "p50_ms": round(median_of([run["p50_ms"] for run in runs]), 2),
            "p99_ms": round(median_of([run["p99_ms"] for run in runs]), 2),
            "rps_per_round": [run["rps"] for run in runs],
            "delta_us_vs_a": round(median_of(deltas), 1),
            "delta_us_vs_a_per_round": [round(d, 1) for d in deltas],
            "ratio_vs_a": round(median_of(ratios), 3),
            "ratio_vs_a_per_round": [round(x, 3) for x in ratios],
        }
    return out


def table(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"| variant | req/s | p50 ms | p99 ms | µs / request at {CONNECTIONS} | Δ vs A µs | × A | per-round × A |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, row in summary.items():
        per_round = ", ".join(f"{x:.2f}" for x in row["ratio_vs_a_per_round"])
        lines.append(
            f"| {key}. {row['what']} | {row['rps']:,.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['us_per_request']:.0f} | {row['delta_us_vs_a']:+.0f} | {row['ratio_vs_a']:.3f} | {per_round} |"
        )
    return lines


def goals_of(
    summary: dict[str, Any], checks: dict[str, Any], micro_figures: dict[str, Any]
) -> list[dict[str, Any]]:
    goals: list[dict[str, Any]] = []
    c = summary.get("C")
    if c is not None:
        goals.append(
            {
                "goal": f"session constraints (C: 4 limits, 1 script call) at most {GOAL_RATIO}x A's time per "
                f"request at {CONNECTIONS} connections",
                "measured": f"{c['ratio_vs_a']:.2f}x ({c['delta_us_vs_a']:+.0f} µs per request; "
                f"{summary['A']['rps']:,.0f} -> {c['rps']:,.0f} req/s)",
                "met": c["ratio_vs_a"] <= GOAL_RATIO,
            }
        )
    goals.append(
        {
            "goal": "every answer 200 allow and recorded; Redis counts equal the recorded calls",
            "measured": ", ".join(
                f"{key} {'ok' if check['ok'] else 'NOT ok'}" for key, check in checks.items()
            ),
            "met": all(check["ok"] for check in checks.values()),
        }
    )
    us = micro_figures.get("us_per_call", {})
    if us:
        goals.append(
            {
                "goal": "the script alone, sequential from one asyncio loop, µs per call (reported)",
                "measured": "; ".join(f"{name} {value:.0f}" for name, value in us.items()),
                "met": None,
            }
        )
    return goals


def git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True).stdout.strip()


# The code this measures: the server runs the tree it starts from, which may differ from HEAD.
MEASURED_SOURCES = (
    "runtime/validate.py",
    "policies/session_counters.py",
    "policies/rate_limiter.py",
    "policies/selectors.py",
    "policies/engine/session_constraints.py",
)


def measured_source_digest() -> str:
    digest = hashlib.sha256()
    for name in MEASURED_SOURCES:
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes())
    return digest.hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8, help="per variant per round")
    parser.add_argument("--warmup-seconds", type=float, default=2, help="per variant, before the rounds")
    parser.add_argument("--sessions", type=int, default=1000, help="session ids the calls are spread over")
    parser.add_argument("--micro-calls", type=int, default=5000, help="sequential calls per micro figure")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--port", type=int, default=0, help="the server's port (default: a free one)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 short rounds")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. 'busy machine')")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/session-constraints-<date>.json")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.warmup_seconds, args.micro_calls = 2, 2, 1, 500
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install -y wrk", file=sys.stderr)
        return 2
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veto_bench_session")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    if not database_url.startswith("postgres"):
        print("the benchmark runs on PostgreSQL: set DATABASE_URL to a postgres:// URL", file=sys.stderr)
        return 2
    wall = time.monotonic()
    chosen = variants()
    source_digests = {"start": measured_source_digest()}

    env = seeded_environment(database_url, redis_url)
    port = args.port or free_port()
    env.update(PORT=str(port), WEB_CONCURRENCY=str(args.workers))
    os.environ.update({k: v for k, v in env.items() if k not in ("PORT", "WEB_CONCURRENCY")})
    import django

    django.setup()
    from common.redis import sync_redis
    from tenancy.models import Team

    # A fresh count: what is in Redis at the end is this run's alone.
    sync_redis().flushdb()
    team = Team.objects.get(slug="demo")
    create_policies(team.id, chosen)
    base = f"http://127.0.0.1:{port}"
    server, log = start_server([sys.executable, "-m", "veto_cloud.serve"], env, base)
    scripts_dir = Path(tempfile.mkdtemp(prefix="session-constraints-"))
    scripts: dict[str, Path] = {}
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        samples = sample_answers(port, chosen)
        print(f"one call each: {samples}", file=sys.stderr, flush=True)
        for variant in chosen:
            scripts[variant.key] = scripts_dir / f"{variant.key}.lua"
            scripts[variant.key].write_text(session_lua(variant.tool, args.sessions))
            wrk(base, scripts[variant.key], seconds=args.warmup_seconds)
        for number in range(args.rounds):
            # Rotated so that no variant always runs first (after the settle) or last.
            order = chosen[number % len(chosen) :] + chosen[: number % len(chosen)]
            this_round: dict[str, dict[str, Any]] = {}
            for variant in order:
                this_round[variant.key] = measured_run(
                    database_url, base, scripts[variant.key], variant.tool, seconds=args.seconds
                )
            rounds.append(this_round)
            print(
                f"round {number + 1}: "
                + ", ".join(
                    f"{key} {this_round[key]['rps']:.0f}/s p99 {this_round[key]['p99_ms']:.1f}"
                    for key in sorted(this_round)
                )
                + f" | load {os.getloadavg()[0]:.2f}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        stop_server(server)
        shutil.rmtree(scripts_dir, ignore_errors=True)

    source_digests["end"] = measured_source_digest()
    rows = rows_by_tool(database_url, [variant.tool for variant in chosen])
    counts = redis_counts(team.id, chosen)
    checks = counted_as_expected(chosen, rows, counts, args.sessions)
    checks["answers"] = {
        "sample_calls": samples,
        "every_run_recorded_no_errors": all(run["rows_ok"] for r in rounds for run in r.values()),
        "ok": all(s == {"status": 200, "decision": "allow"} for s in samples.values())
        and all(run["rows_ok"] for r in rounds for run in r.values()),
    }
    micro_figures = asyncio.run(micro(team.id, chosen, args.micro_calls))
    summary = summarize(chosen, rounds)
    goals = goals_of(summary, checks, micro_figures)
    info = machine()
    info["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    loads = [run["load_before"][0] for r in rounds for run in r.values()]
    seconds = round(time.monotonic() - wall)

    print(
        f"\nmachine: {info['cpus']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, {info['postgresql']}, "
        f"{info['redis']}; server: veto_cloud.serve, {args.workers} worker(s), {CONNECTIONS} connections; "
        f"{args.rounds} rounds of {args.seconds:g} s per variant, calls over {args.sessions} sessions; "
        f"1-minute load average before the runs {min(loads):.2f}-{max(loads):.2f}, at end {info['load_at_end']}"
    )
    print("\n".join(table(summary)))
    print(
        f"\nthe script alone, {micro_figures['calls']} sequential calls from one asyncio loop, best of 3 (µs per call):"
    )
    for name, value in micro_figures["us_per_call"].items():
        print(f"  {name}: {value:.1f}")
    for key, check in checks.items():
        print(f"check {key}: {'ok' if check['ok'] else 'NOT OK'} {json.dumps(check)[:400]}")
    for goal in goals:
        verdict = {True: "met", False: "NOT met", None: "reported"}[goal["met"]]
        print(f"goal: {goal['goal']}: {goal['measured']} ({verdict})")
    print(f"wall time: {seconds} s")

    date = datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.out or ROOT / "benchmarks" / "results" / (
        f"session-constraints-{date}{'-quick' if args.quick else ''}.json"
    )
    everything_ok = all(check["ok"] for check in checks.values())
    result = {
        "benchmark": "session_constraints",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": seconds,
        "machine": info,
        "note": args.note,
        "git_commit": git("rev-parse", "HEAD"),
        # Empty outside a git checkout (e.g. a `git archive` export of a commit, run on its own).
        "measured_sources_dirty": git("status", "--porcelain", "--", *MEASURED_SOURCES),
        "measured_sources_sha256_16": source_digests,
        "measured_sources_unchanged_during_run": len(set(source_digests.values())) == 1,
        "server": f"python -m veto_cloud.serve, {args.workers} worker(s)",
        "connections": CONNECTIONS,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average_before_runs": {"min": min(loads), "max": max(loads)},
        "arguments": ARGUMENTS,
        "variants": {v.key: {"what": v.what, "tool": v.tool, "policy": v.document} for v in chosen},
        "summary": summary,
        "rounds": rounds,
        "micro": micro_figures,
        "checks": checks,
        "all_counted_as_expected": everything_ok,
        "goal_ratio": GOAL_RATIO,
        "goals": goals,
        "server_log_tail": log.read_text()[-2000:],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {out}")
    return 0 if everything_ok else 1


if __name__ == "__main__":
    sys.exit(main())
