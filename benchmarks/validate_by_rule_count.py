#!/usr/bin/env python
"""Validate through the real server at 10, 100, 1,000 and 10,000 rules (issue 14, "How cost grows").

The engine alone is ``engine_by_rule_count.py``; this drives the same generated rule sets and
the same call mix through ``POST /v1/tools/validate`` (imported from there, not copied: the same
seed gives the same sets and calls), and measures the engine in the same run for the ratio.

1. One fresh PostgreSQL database (DATABASE_URL), migrated and seeded with the demo team and key,
   and one server started as ``validate_throughput.py`` starts it (``python -m veto_cloud.serve``,
   DEBUG off, PostgreSQL and Redis, ``--workers`` processes): its functions, imported.
2. Per family (IR, ``when:``-heavy) and count, a new version of the demo team's rule set holding
   the generated rules only is stored and published through the service layer
   (``rule_set_version_create`` + ``rule_set_version_publish``, as ``seed_demo`` does), so it
   replaces the active set as an upload and publish would. Sets over today's upload limits are
   let in by raising the limits through the environment the settings read
   (``VETO_RULE_SET_MAX_BYTES``, ``_MAX_RULES``, ``_MAX_EXPRESSION_CHARS``: just enough for the
   largest set of the run), for this process and the server alike; the values are in the output.
   The server runs with ``DATABASE_REQUEST_TIMEOUT=30`` (``--database-request-timeout``; 0 keeps
   the product's 0.8 s): it loads and compiles a new version under that deadline, and a set
   that compiles slower is answered 503 throughout (the step is reported "not served").
   One database for the whole run: decision rows accumulate from step to step (the count at
   each step's start is recorded), so the smallest set is measured again at the end of each
   family ("again") to show what the later steps' table and the machine changed.
3. Per step: the engine in process (``engine_by_rule_count.measure``: per-call best of
   ``--repeat``), then the server until every worker answers with the new version, then
   (check) ``--check-calls`` calls of the mix sent one at a time: each answer (decision, rule,
   noted rules) must equal the in-process engine's for the same call at the time it was sent,
   and each answer's decision row must exist with that decision; (a) light load: wrk, one
   connection, ``--light-seconds``: p50/p99; (b) wrk, 32 connections, ``--load-seconds``: req/s
   and p99. Every wrk run also checks that the decision rows added cover every answered request
   (up to one in-flight request per connection may be recorded but not counted).

Bodies are what the SDK sends (``VetoCloudClient.validate``): ``tool_name``, ``arguments`` and
``context`` (left out when empty), the generated mix's calls.

    nice -n 19 .venv/bin/python benchmarks/validate_by_rule_count.py [--quick] [--port 8630]
        [--counts 10,100,1000,10000] [--families ir,when] [--workers 2] [--note "..."]

DATABASE_URL (default .../veto_bench_rules) and REDIS_URL (default Redis db 14, as
validate_throughput) choose the stores. Goal (issue 14): 1,000 rules cost at most 2x what 10
cost: per decision in the engine; through the server, p50 at one connection and the time per
request at 32 connections (1 / req/s).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine_by_rule_count import (  # noqa: E402
    ir_rule_set,
    measure,
    upload_check,
    when_rule_set,
    workload,
)
from validate_throughput import (  # noqa: E402
    API_KEY,
    CONNECTIONS,
    ROOT,
    decision_count,
    free_port,
    lua_for,
    machine,
    parse_wrk,
    seeded_environment,
    start_server,
    stop_server,
)

from policies.engine import CompiledRuleSet, ToolCall, compile_rule_set, normalize_rule_set  # noqa: E402
from policies.engine.source import DEFAULT_LIMITS, STORED_LIMITS  # noqa: E402

FAMILIES = {"ir": ir_rule_set, "when": when_rule_set}
VALIDATE_PATH = "/v1/tools/validate"
HEADERS = {"Content-Type": "application/json", "X-Veto-API-Key": API_KEY}
ACTOR_NAME = "validate_by_rule_count"


def body_of(call: ToolCall) -> dict[str, Any]:
    """The request body the SDK's ``validate`` sends for this call (context only when set)."""
    body: dict[str, Any] = {"tool_name": call.tool_name, "arguments": dict(call.arguments)}
    if call.context:
        body["context"] = dict(call.context)
    return body


def generated(family: str, count: int, seed: int, calls: int) -> tuple[list[dict[str, Any]], list[ToolCall]]:
    """The set and the mix engine_by_rule_count builds for the same seed, family and count."""
    rng = random.Random(f"{seed}-{family}-{count}")
    rules, by_tool = FAMILIES[family](count, rng)
    return rules, workload(calls, by_tool, rng)


def raised_limits(documents: list[list[dict[str, Any]]]) -> dict[str, str]:
    """The VETO_RULE_SET_MAX_* values that let the largest generated set in (never below the
    defaults, never above the settings' own maxima)."""
    largest_bytes = max(len(json.dumps({"version": "1.0", "rules": r}).encode()) for r in documents)
    largest_rules = max(len(r) for r in documents)
    largest_expressions = max(sum(len(rule.get("when", "")) for rule in r) for r in documents)
    return {
        "VETO_RULE_SET_MAX_BYTES": str(
            min(16 * 1024 * 1024, max(DEFAULT_LIMITS.max_bytes, largest_bytes + 4096))
        ),
        "VETO_RULE_SET_MAX_RULES": str(max(DEFAULT_LIMITS.max_rules, largest_rules)),
        "VETO_RULE_SET_MAX_EXPRESSION_CHARS": str(
            max(DEFAULT_LIMITS.max_expression_chars, largest_expressions + 100)
        ),
    }


def wrk(base: str, script: Path, *, connections: int, seconds: float) -> dict[str, Any]:
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    command += ["-s", str(script), f"{base}{VALIDATE_PATH}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


def settled_count(database_url: str) -> int:
    """The decision rows once the count stops moving: requests wrk left in flight when it
    stopped are still answered (and recorded) after it returns."""
    count = decision_count(database_url)
    for _ in range(50):
        time.sleep(0.3)
        again = decision_count(database_url)
        if again == count:
            break
        count = again
    return count


def recorded_run(
    database_url: str, base: str, script: Path, *, connections: int, seconds: float
) -> dict[str, Any]:
    """One wrk run and the decision rows it added; ``rows_ok``: every answer has its row."""
    before = settled_count(database_url)
    outcome = wrk(base, script, connections=connections, seconds=seconds)
    outcome["rows_recorded"] = settled_count(database_url) - before
    outcome["rows_ok"] = (
        outcome["socket_errors"] == 0
        and outcome["non_2xx"] == 0
        and outcome["requests"] <= outcome["rows_recorded"] <= outcome["requests"] + connections
    )
    outcome["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return outcome


class Client:
    """One keep-alive connection, requests one at a time (as one agent's SDK would)."""

    def __init__(self, port: int, timeout: float = 180.0) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def post(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.connection.request("POST", VALIDATE_PATH, body=json.dumps(body), headers=HEADERS)
        response = self.connection.getresponse()
        answer: dict[str, Any] = json.loads(response.read() or b"{}")
        return response.status, answer

    def validate(self, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = self.post(body)
        if status != 200:
            raise RuntimeError(f"validate answered {status}: {json.dumps(answer)[:300]}")
        return answer

    def close(self) -> None:
        self.connection.close()


class NotServed(RuntimeError):
    """The server did not answer with the new version in time (e.g. 503s all along)."""


def _burst(
    port: int, body: dict[str, Any], seen: list[tuple[int, int | None]], failures: list[BaseException]
) -> None:
    client = Client(port)
    try:
        for _ in range(4):
            status, answer = client.post(body)
            seen.append((status, answer["metadata"]["rule_set_version"] if status == 200 else None))
    except OSError as exc:
        failures.append(exc)
    finally:
        client.close()


def wait_for_version(port: int, body: dict[str, Any], number: int, *, timeout: float) -> dict[str, Any]:
    """Until every worker answers with version ``number``. First one call at a time: the first
    request after the publish makes its worker load and compile the version while it waits
    (``policies.selectors.active_rule_set``), so its latency is that worker's load; answers
    other than 200 meanwhile are counted. Then bursts over 8 connections (so that every worker
    gets some) until all answer with it."""
    started = time.monotonic()
    statuses: Counter[str] = Counter()
    first: dict[str, Any] = {}
    client = Client(port)
    try:
        while time.monotonic() - started < timeout:
            began = time.perf_counter()
            status, answer = client.post(body)
            statuses[str(status)] += 1
            if status == 200 and answer["metadata"]["rule_set_version"] == number:
                first = {"first_answer_ms": round((time.perf_counter() - began) * 1e3, 1)}
                break
            if status != 200:
                first.setdefault("first_error", answer.get("error", {}).get("code"))
                time.sleep(0.2)
    finally:
        client.close()
    while first.get("first_answer_ms") is not None and time.monotonic() - started < timeout:
        seen: list[tuple[int, int | None]] = []
        failures: list[BaseException] = []
        threads = [threading.Thread(target=_burst, args=(port, body, seen, failures)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise RuntimeError(f"while waiting for version {number}: {failures[0]}")
        statuses.update(
            str(status) if version in (number, None) else "200 older version" for status, version in seen
        )
        if seen and all(version == number for _, version in seen):
            return {"ready_s": round(time.monotonic() - started, 2), **first, "answers": dict(statuses)}
        time.sleep(0.2)
    raise NotServed(
        f"no answer from version {number} on every worker within {timeout:.0f} s: {dict(statuses)}"
        f" {first.get('first_error') or ''}"
    )


def outcome_of(decision: Any) -> list[Any]:
    return [decision.decision, decision.rule_id, list(decision.noted_rule_ids)]


def check_decisions(
    port: int, database_url: str, compiled: CompiledRuleSet, calls: list[ToolCall], number: int
) -> dict[str, Any]:
    """Each call sent alone: the server's answer equals the engine's for the same call at the
    time it was decided (evaluated at the send and at the answer: a time-window rule can flip
    between them), it came from version ``number``, and its decision row holds that decision."""
    import psycopg

    client = Client(port)
    mismatches: list[dict[str, Any]] = []
    answered: dict[str, str] = {}
    latencies: list[float] = []
    try:
        for call in calls:
            sent = datetime.now(UTC)
            began = time.perf_counter()
            answer = client.validate(body_of(call))
            latencies.append((time.perf_counter() - began) * 1e3)
            done = datetime.now(UTC)
            meta = answer["metadata"]
            got = [answer["decision"], meta["rule_id"], meta["noted_rule_ids"] or []]
            expected = [
                outcome_of(compiled.evaluate(ToolCall(call.tool_name, call.arguments, call.context, at)))
                for at in (sent, done)
            ]
            answered[meta["decision_id"]] = answer["decision"]
            if got not in expected or meta["rule_set_version"] != number:
                if len(mismatches) < 5:
                    mismatches.append(
                        {
                            "body": body_of(call),
                            "server": got,
                            "engine": expected[0],
                            "version": meta["rule_set_version"],
                        }
                    )
                else:
                    mismatches.append({})
    finally:
        client.close()
    time.sleep(0.3)
    with psycopg.connect(database_url) as conn:
        rows: dict[str, str] = dict(
            conn.execute(
                "SELECT id::text, decision FROM audit_decisionrecord WHERE id = ANY(%s::uuid[])",
                (list(answered),),
            ).fetchall()
        )
    rows_missing = sum(1 for decision_id in answered if decision_id not in rows)
    rows_differing = sum(1 for d, decision in answered.items() if d in rows and rows[d] != decision)
    ordered = sorted(latencies)
    return {
        "calls": len(calls),
        "matched": len(calls) - len(mismatches),
        "mismatch_examples": [m for m in mismatches if m],
        "rows_missing": rows_missing,
        "rows_differing": rows_differing,
        "ok": not mismatches and rows_missing == 0 and rows_differing == 0,
        # The Python client's own timing (its overhead included), for context only.
        "python_client_p50_ms": round(ordered[len(ordered) // 2], 3),
    }


def publish(team: Any, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """A new version holding ``rules``, stored and published through the service layer."""
    from policies.services import rule_set_version_create, rule_set_version_publish
    from tenancy.actor import Actor

    actor = Actor.process(ACTOR_NAME)
    source = json.dumps({"version": "1.0", "rules": rules})
    started = time.perf_counter()
    version = rule_set_version_create(
        team=team, source_text=source, content_type="application/json", author=actor
    )
    stored = time.perf_counter()
    rule_set_version_publish(version=version, actor=actor)
    return {
        "version": version.number,
        "store_s": round(stored - started, 2),
        "publish_s": round(time.perf_counter() - stored, 2),
    }


def engine_source_digest() -> str:
    """Which engine was measured: the working tree's policies/engine, which may differ from HEAD."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "policies" / "engine").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def step(
    *,
    label: str,
    family: str,
    count: int,
    args: argparse.Namespace,
    team: Any,
    port: int,
    database_url: str,
) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    began = time.monotonic()
    print(f"  {label:>12} {family:4}: publishing and measuring", file=sys.stderr, flush=True)
    rules, calls = generated(family, count, args.seed, args.calls)
    row: dict[str, Any] = {"family": family, "rules": count, "label": label}
    row["load_before"] = [round(x, 2) for x in os.getloadavg()]
    row["decision_rows_at_start"] = decision_count(database_url)
    row.update(upload_check(rules))
    row["publication"] = publish(team, rules)
    number = row["publication"]["version"]
    # The engine first, while the server is idle (it compiles the new version on its next request).
    row["engine"] = measure(rules, calls, args.repeat, indexed=True)
    compiled = compile_rule_set(normalize_rule_set({"version": "1.0", "rules": rules}, limits=STORED_LIMITS))
    decisions = Counter(compiled.evaluate(call).decision for call in calls)
    row["mix"] = {k: round(v / len(calls), 3) for k, v in sorted(decisions.items())}
    try:
        row["server"] = wait_for_version(port, body_of(calls[0]), number, timeout=args.ready_timeout)
    except NotServed as exc:
        row["server"] = {"not_served": str(exc)}
        print(f"  {label:>12} {family:4}: NOT SERVED: {exc}", file=sys.stderr, flush=True)
        return row
    every = max(1, len(calls) // args.check_calls)
    row["check"] = check_decisions(port, database_url, compiled, calls[::every][: args.check_calls], number)

    script = Path(tempfile.mkdtemp(prefix="rulecount-")) / "validate.lua"
    script.write_text(lua_for(VALIDATE_PATH, [body_of(call) for call in calls], HEADERS))
    wrk(base, script, connections=CONNECTIONS, seconds=args.warmup_seconds)
    row["light"] = recorded_run(database_url, base, script, connections=1, seconds=args.light_seconds)
    row["load"] = recorded_run(database_url, base, script, connections=CONNECTIONS, seconds=args.load_seconds)
    shutil.rmtree(script.parent, ignore_errors=True)
    row["step_seconds"] = round(time.monotonic() - began, 1)
    print(
        f"  {label:>12} {family:4}: engine {row['engine']['mean_us']:7.2f} us | 1 conn p50 {row['light']['p50_ms']:.2f} "
        f"p99 {row['light']['p99_ms']:.2f} ms | {CONNECTIONS} conns {row['load']['rps']:.0f}/s p99 "
        f"{row['load']['p99_ms']:.1f} ms | check {row['check']['matched']}/{row['check']['calls']} "
        f"rows {'ok' if row['light']['rows_ok'] and row['load']['rows_ok'] else 'NOT OK'} | load {row['load_before']}",
        file=sys.stderr,
        flush=True,
    )
    return row


def ratio(value: float, base: float) -> float:
    return round(value / base, 2) if base else float("nan")


def table(results: list[dict[str, Any]], smallest: int) -> tuple[list[str], dict[str, Any]]:
    lines = [
        "| set | rules | mix allow / deny / approval | engine µs (× 10) | 1 conn p50 ms (× 10) | 1 conn p99 ms | "
        f"{CONNECTIONS} conns req/s | {CONNECTIONS} conns p99 ms | µs / request at {CONNECTIONS} (× 10) | decisions = engine | rows | load |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    goals: dict[str, Any] = {}
    for family in dict.fromkeys(r["family"] for r in results):
        rows = [r for r in results if r["family"] == family]
        name_of = {"ir": "IR", "when": "`when:`"}
        served = [r for r in rows if "light" in r]
        base = next((r for r in served if r["rules"] == smallest), None)
        for r in rows:
            name = f"{r['rules']:,}" + (" again" if r["label"].endswith("again") else "")
            if base is None or r not in served:
                reason = r["server"].get("not_served", "the smallest set was not served")
                lines.append(f"| {name_of[family]} | {name} | not measured: {reason} |")
                continue
            cost = 1e6 / r["load"]["rps"]
            r["ratios"] = {
                "engine_mean": ratio(r["engine"]["mean_us"], base["engine"]["mean_us"]),
                "light_p50": ratio(r["light"]["p50_ms"], base["light"]["p50_ms"]),
                "light_p99": ratio(r["light"]["p99_ms"], base["light"]["p99_ms"]),
                "load_cost": ratio(base["load"]["rps"], r["load"]["rps"]),
                "load_p99": ratio(r["load"]["p99_ms"], base["load"]["p99_ms"]),
            }
            mix = " / ".join(f"{r['mix'].get(k, 0):.0%}" for k in ("allow", "deny", "require_approval"))
            rows_ok = r["light"]["rows_ok"] and r["load"]["rows_ok"] and r["check"]["rows_missing"] == 0
            lines.append(
                f"| {name_of[family]} | {name} | {mix} | "
                f"{r['engine']['mean_us']:.1f} ({r['ratios']['engine_mean']:.2f}) | "
                f"{r['light']['p50_ms']:.2f} ({r['ratios']['light_p50']:.2f}) | {r['light']['p99_ms']:.2f} | "
                f"{r['load']['rps']:,.0f} | {r['load']['p99_ms']:.1f} | {cost:.0f} ({r['ratios']['load_cost']:.2f}) | "
                f"{r['check']['matched']}/{r['check']['calls']} | {'all recorded' if rows_ok else 'NOT all'} | "
                f"{r['load_before'][0]:.1f} |"
            )
        again = next((r for r in served if r["label"].endswith("again")), None)
        if again is not None:
            # The same set twice, first and last: how far the machine (and the grown decision
            # table) moved the server's figures during the run; ratios inside it are noise.
            goals.setdefault(family, {})["smallest_again"] = {
                "light_p50": again["ratios"]["light_p50"],
                "load_cost": again["ratios"]["load_cost"],
            }
        at = next((r for r in served if r["rules"] == 1000 and not r["label"].endswith("again")), None)
        if at is not None and base is not None and smallest == 10:
            engine_met = at["ratios"]["engine_mean"] <= 2
            server_met = at["ratios"]["light_p50"] <= 2 and at["ratios"]["load_cost"] <= 2
            goals.setdefault(family, {}).update(
                {
                    "engine_ratio": at["ratios"]["engine_mean"],
                    "engine_met": engine_met,
                    "server_light_p50_ratio": at["ratios"]["light_p50"],
                    "server_load_cost_ratio": at["ratios"]["load_cost"],
                    "server_met": server_met,
                }
            )
    return lines, goals


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="10,100,1000,10000")
    parser.add_argument("--families", default="ir,when")
    parser.add_argument("--calls", type=int, default=1000, help="calls in the mix (engine_by_rule_count's)")
    parser.add_argument("--repeat", type=int, default=5, help="engine: per-call best of this many")
    parser.add_argument("--check-calls", type=int, default=200, help="calls sent one by one and compared")
    parser.add_argument("--light-seconds", type=float, default=6)
    parser.add_argument("--load-seconds", type=float, default=8)
    parser.add_argument("--warmup-seconds", type=float, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--database-request-timeout",
        type=float,
        default=30.0,
        help="the server's DATABASE_REQUEST_TIMEOUT (product default 0.8 s); 0 keeps the default",
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=120.0, help="seconds for the server to serve a new set"
    )
    parser.add_argument("--port", type=int, default=0, help="the server's port (default: a free one)")
    parser.add_argument("--seed", type=int, default=20261214)
    parser.add_argument(
        "--no-again", action="store_true", help="do not measure the smallest set again at the end"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 and 100 rules, short runs")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. 'busy machine')")
    parser.add_argument(
        "--out", type=Path, help="default benchmarks/results/validate-by-rule-count-<date>.json"
    )
    args = parser.parse_args()
    if args.quick:
        args.counts, args.calls, args.check_calls = "10,100", 300, 50
        args.light_seconds, args.load_seconds, args.warmup_seconds, args.repeat = 2, 3, 1, 3
    counts = [int(c) for c in args.counts.split(",")]
    families = [f for f in args.families.split(",") if f]
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install -y wrk", file=sys.stderr)
        return 2
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veto_bench_rules")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    if not database_url.startswith("postgres"):
        print("the benchmark runs on PostgreSQL: set DATABASE_URL to a postgres:// URL", file=sys.stderr)
        return 2
    wall = time.monotonic()
    # This process imported policies/engine above; the server imports it once it starts. Another
    # change to the working tree in between and the two run different engines: checked below.
    engine_digests = {"this_process": engine_source_digest()}

    limits = raised_limits([generated(f, c, args.seed, 1)[0] for f in families for c in counts])
    os.environ.update(limits)
    # Parse uploads in this process's thread (as the tests do): no parse worker to spawn.
    os.environ["VETO_RULE_SET_PARSE_WORKERS"] = "0"
    env = seeded_environment(database_url, redis_url)
    env.pop("VETO_RULE_SET_PARSE_WORKERS")  # the server keeps its default
    port = args.port or free_port()
    env.update(PORT=str(port), WEB_CONCURRENCY=str(args.workers))
    if args.database_request_timeout:
        # The server loads and compiles a newly published version inside one run_in_db_thread
        # call, under this deadline (policies.selectors.active_rule_set): at 0.8 s a set that
        # takes longer to compile is answered 503 database_unavailable, and the breaker opens.
        env["DATABASE_REQUEST_TIMEOUT"] = str(args.database_request_timeout)
    os.environ.update({k: v for k, v in env.items() if k not in ("PORT", "WEB_CONCURRENCY")})
    import django

    django.setup()
    from tenancy.models import Team

    team = Team.objects.get(slug="demo")
    base = f"http://127.0.0.1:{port}"
    server, log = start_server([sys.executable, "-m", "veto_cloud.serve"], env, base)
    engine_digests["server_started"] = engine_source_digest()
    results: list[dict[str, Any]] = []
    try:
        for family in families:
            plan = [(str(c), c) for c in counts]
            if not args.no_again and len(counts) > 1:
                plan.append((f"{min(counts)} again", min(counts)))
            for label, count in plan:
                results.append(
                    step(
                        label=label,
                        family=family,
                        count=count,
                        args=args,
                        team=team,
                        port=port,
                        database_url=database_url,
                    )
                )
    finally:
        stop_server(server)

    engine_digests["end"] = engine_source_digest()
    engine_stable = len(set(engine_digests.values())) == 1
    lines, goals = table(results, min(counts))
    seconds = round(time.monotonic() - wall)
    measured = [r for r in results if "light" in r]
    all_served = len(measured) == len(results)
    all_checked = all(r["check"]["ok"] for r in measured)
    all_recorded = all(r["light"]["rows_ok"] and r["load"]["rows_ok"] for r in measured)
    info = machine()
    info["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\nmachine: {info['cpus']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, {info['postgresql']}, "
        f"{info['redis']}; server: veto_cloud.serve, {args.workers} worker(s); load at end {info['load_at_end']}"
    )
    print(
        "limits raised for this run (environment of this process and the server): "
        + ", ".join(f"{k}={v}" for k, v in limits.items())
    )
    timeout = env.get("DATABASE_REQUEST_TIMEOUT", "0.8 (default)")
    print(f"server DATABASE_REQUEST_TIMEOUT: {timeout} s")
    print("\n".join(lines))
    print(
        "\n| set | rules | store s | publish s | first answer after publish ms | every worker on it after s | answers meanwhile |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        p, sv = r["publication"], r["server"]
        print(
            f"| {r['family']} | {r['label']} | {p['store_s']} | {p['publish_s']} | {sv.get('first_answer_ms', '-')} | "
            f"{sv.get('ready_s', 'never')} | {sv.get('answers', sv.get('not_served'))} |"
        )
    for family, goal in goals.items():
        if "engine_ratio" in goal:
            print(
                f"{family}: 1,000 rules vs 10: engine {goal['engine_ratio']:.2f}x ({'met' if goal['engine_met'] else 'not met'}); "
                f"server p50 at 1 conn {goal['server_light_p50_ratio']:.2f}x, time per request at {CONNECTIONS} conns "
                f"{goal['server_load_cost_ratio']:.2f}x ({'met' if goal['server_met'] else 'not met'}) (goal: at most 2x)"
            )
        if "smallest_again" in goal:
            drift = goal["smallest_again"]
            print(
                f"{family}: the smallest set again at the end: p50 at 1 conn {drift['light_p50']:.2f}x, time per "
                f"request {drift['load_cost']:.2f}x its first figures (server ratios within that are the machine's noise)"
            )
    print(
        f"every set served: {all_served}; decisions equal to the engine's on every sampled call: {all_checked}; "
        f"every answer recorded: {all_recorded}"
    )
    if not engine_stable:
        print(
            f"WARNING: policies/engine changed during the run ({engine_digests}): this process and the "
            "server may run different engines, and a decision mismatch may say only that"
        )
    print(f"wall time: {seconds} s")

    date = datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.out or ROOT / "benchmarks" / "results" / (
        f"validate-by-rule-count-{date}{'-quick' if args.quick else ''}.json"
    )
    summary = {
        "benchmark": "validate_by_rule_count",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": seconds,
        "machine": info,
        "note": args.note,
        "git_commit": git("rev-parse", "HEAD"),
        "engine_dirty": bool(git("status", "--porcelain", "--", "policies/engine")),
        "engine_source_sha256_16": engine_digests,
        "engine_unchanged_during_run": engine_stable,
        "server": f"python -m veto_cloud.serve, {args.workers} worker(s)",
        "connections": CONNECTIONS,
        "limits": {
            "how": "raised through the environment (settings RULE_SET_MAX_*) of this process and the server",
            **limits,
        },
        "server_database_request_timeout": timeout,
        "database": "one database for the run; a new version published per step (decision rows accumulate)",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "goals": goals,
        "all_served": all_served,
        "all_decisions_equal_engine": all_checked,
        "all_answers_recorded": all_recorded,
        "results": results,
        "server_log_tail": log.read_text()[-2000:],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"written: {out}")
    return 0 if all_served and all_checked and all_recorded else 1


if __name__ == "__main__":
    sys.exit(main())
