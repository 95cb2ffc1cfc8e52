#!/usr/bin/env python
"""How the rule engine's cost per decision grows with the size of the rule set (issue 14).

Seeded, generated rule sets of 10, 100, 1,000 and 10,000 rules (``--counts``), shaped like a
team's: about ten rules per tool (``max(10, rules // 10)`` tools), 90 % of the rules scoped to
one tool (a few to two), 10 % global; each tool has its own 3-5 argument names out of a shared
vocabulary of 40, global rules read the shared names; every IR operator (context time windows
and roles included), conditions and condition groups, agent scopes, 5 % disabled rules and every
action. A second family is ``when:``-heavy: every rule's test is a CEL expression (comparisons,
``in``, ``startsWith``, ``matches``, ``has()``, ``size()``, ``||`` and ``!``) over the same tools
and arguments. Each set is compiled once, then ``CompiledRuleSet.evaluate(ToolCall(...))`` decides
a mix of ``--calls`` calls (every tool, its own arguments, some context), ``--repeat`` times:
the table gives, over the mix, the mean, p50 and p99 of each call's best time of its repeats
(and the best whole pass's mean in the JSON), plus how many rules the engine could visit for an average call (the
global ones plus the tool's own).

Limits: each document is also loaded as an upload would be (``load_rule_set`` with the default
``Limits``, as JSON); a set over a limit is reported (which limit, the maximum, the actual) and
measured anyway, compiled the way stored versions are read (``STORED_LIMITS``): that measures
the engine, not what an upload may hold today.

    nice -n 19 .venv/bin/python benchmarks/engine_by_rule_count.py [--counts 10,100,1000,10000]
        [--calls 1000] [--repeat 5] [--seed 20261214] [--out benchmarks/results/engine-by-rule-count.json]
        [--unindexed]   # the engine as before the argument index: every rule of the call's tool

Goal (issue 14): 1,000 rules cost at most 2x what 10 rules cost, per decision.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.engine import ToolCall, compile_rule_set, load_rule_set, normalize_rule_set  # noqa: E402
from policies.engine.errors import RuleSetError, RuleSetTooLarge  # noqa: E402
from policies.engine.source import DEFAULT_LIMITS, STORED_LIMITS  # noqa: E402

FIELDS = [
    "amount", "bucket", "recipient", "path", "tags", "region", "url", "query", "user", "email",
    "command", "file", "table", "channel", "branch", "repo", "host", "port", "size", "limit",
    "currency", "account", "project", "namespace", "image", "role_name", "topic", "queue", "key", "model",
    "prompt", "title", "body", "sql", "method", "headers", "ticket", "customer", "order_id", "scope",
]  # fmt: skip
WORDS = [
    "internal-a", "public", "secret", "eu-west", "us-east", "/etc/passwd", "/home/a", "ops@x.invalid",
    "prod", "staging", "DROP TABLE", "main", "a,b;c", "",
]  # fmt: skip
AGENTS = ["agent-a", "agent-b", "agent-c"]
ROLES = ["admin", "analyst", "support"]
WINDOW = {"start": "09:00", "end": "17:00", "timezone": "Europe/Berlin"}
NIGHT = {"start": "22:00", "end": "06:00", "timezone": "UTC", "days": ["mon", "tue", "wed", "thu", "fri"]}


def tool_fields(count: int, rng: random.Random) -> dict[str, list[str]]:
    return {f"tool_{i}": rng.sample(FIELDS, rng.randint(3, 5)) for i in range(count)}


# Operators that hold for a missing field: a rule leads with one of the others, as rules that
# fire on a few calls do (a global "not_equals" alone would decide nearly every call).
NEGATED = {"not_equals", "not_contains", "not_in"}


def ir_conditions(fields: list[str], rng: random.Random, count: int) -> list[dict[str, Any]]:
    first = ir_condition(fields, rng)
    while first["operator"] in NEGATED or first["field"].startswith("context."):
        first = ir_condition(fields, rng)
    return [first, *(ir_condition(fields, rng) for _ in range(count - 1))]


def ir_condition(fields: list[str], rng: random.Random) -> dict[str, Any]:
    kind = rng.randrange(16)
    if kind == 14:
        return {"field": "context.time", "operator": rng.choice(["within_hours", "outside_hours"]),
                "value": rng.choice([WINDOW, NIGHT])}  # fmt: skip
    if kind == 15:
        return {
            "field": "context.role",
            "operator": rng.choice(["equals", "not_equals"]),
            "value": rng.choice(ROLES),
        }
    field = f"arguments.{rng.choice(fields)}" if rng.random() < 0.8 else rng.choice(fields)
    operator, value = [
        ("equals", rng.choice(WORDS)),
        ("not_equals", rng.choice(WORDS)),
        ("contains", rng.choice(["secret", "@", "west", "DROP"])),
        ("not_contains", rng.choice(["internal", "@x."])),
        ("starts_with", rng.choice(["/etc", "internal", "eu"])),
        ("ends_with", rng.choice([".invalid", "-a", "passwd"])),
        ("matches", rng.choice([r"^/etc/", r"\d{4}", "@x\\.", "(?i)drop\\s+table"])),
        ("greater_than", rng.randint(0, 1000)),
        ("less_than", rng.randint(0, 100)),
        ("length_greater_than", rng.randint(1, 4)),
        ("in", rng.sample(WORDS, 3)),
        ("not_in", rng.sample(WORDS, 3)),
        ("greater_than", rng.randint(0, 1000)),
        ("equals", rng.choice(WORDS)),
    ][kind]
    return {"field": field, "operator": operator, "value": value}


def cel_expression(fields: list[str], rng: random.Random) -> str:
    operands = [cel_operand(fields, rng, leading=True)]
    operands += [cel_operand(fields, rng, leading=False) for _ in range(rng.randint(0, 2))]
    return " && ".join(operands)


def cel_operand(fields: list[str], rng: random.Random, *, leading: bool) -> str:
    """One operand; a leading one is false for a missing field (as in ir_conditions)."""
    name = rng.choice(fields)
    choices = [
        f"args.{name} > {rng.randint(0, 1000)}",
        f"args.{name} < {rng.randint(0, 100)}",
        f"args.{name} == '{rng.choice(WORDS)}'",
        f"args.{name} in ['prod', 'staging', 'main']",
        f"args.{name}.startsWith('{rng.choice(['/etc', 'internal', 'eu'])}')",
        f"args.{name}.matches('{rng.choice(['^/etc/', '[0-9]{4}', '@x[.]'])}')",
        f"size(args.{name}) > {rng.randint(1, 4)}",
        f"has(args.{name})",
        f"(args.{name} == 'secret' || args.{name} == 'public')",
    ]
    if not leading:
        choices += [f"!args.{name}.startsWith('internal-')", f"context.role == '{rng.choice(ROLES)}'"]
    return rng.choice(choices)


def base_rule(index: int, tools: list[str], rng: random.Random) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": f"rule-{index}",
        "name": f"rule {index}",
        "severity": rng.choice(["low", "medium", "high"]),
        "action": rng.choice(["block", "block", "require_approval", "allow", "allow", "warn", "log"]),
    }
    if rng.random() < 0.9:
        rule["tools"] = rng.sample(tools, 2) if rng.random() < 0.05 else [rng.choice(tools)]
    if rng.random() < 0.05:
        rule["enabled"] = False
    if rng.random() < 0.1:
        rule["agents"] = rng.sample(AGENTS, 2) if rng.random() < 0.5 else {"not": [rng.choice(AGENTS)]}
    return rule


def rule_fields(rule: dict[str, Any], by_tool: dict[str, list[str]]) -> list[str]:
    # A global rule reads names many tools share; a tool's rule reads that tool's arguments.
    return by_tool[rule["tools"][0]] if "tools" in rule else FIELDS[:12]


def ir_rule_set(count: int, rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    by_tool = tool_fields(max(10, count // 10), rng)
    tools = list(by_tool)
    rules = []
    for index in range(count):
        rule = base_rule(index, tools, rng)
        fields = rule_fields(rule, by_tool)
        if rng.random() < 0.75:
            rule["conditions"] = ir_conditions(fields, rng, rng.randint(1, 3))
        else:
            rule["condition_groups"] = [ir_conditions(fields, rng, rng.randint(1, 2)) for _ in range(2)]
        rules.append(rule)
    return rules, by_tool


def when_rule_set(count: int, rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    by_tool = tool_fields(max(10, count // 10), rng)
    tools = list(by_tool)
    rules = []
    for index in range(count):
        rule = base_rule(index, tools, rng)
        fields = rule_fields(rule, by_tool)
        rule["when"] = cel_expression(fields, rng)
        rules.append(rule)
    return rules, by_tool


def workload(count: int, by_tool: dict[str, list[str]], rng: random.Random) -> list[ToolCall]:
    tools = list(by_tool)
    day = datetime(2026, 12, 14, tzinfo=UTC)
    calls = []
    for _ in range(count):
        tool = rng.choice(tools)
        arguments: dict[str, Any] = {}
        for name in rng.sample(by_tool[tool], rng.randint(1, len(by_tool[tool]))):
            arguments[name] = rng.choice(
                [
                    *WORDS,
                    rng.randint(0, 2000),
                    str(rng.randint(0, 99999)),
                    [rng.choice(WORDS)] * rng.randint(0, 5),
                ]
            )
        context: dict[str, Any] = {}
        if rng.random() < 0.7:
            context["agent_id"] = rng.choice(AGENTS)
        if rng.random() < 0.5:
            context["role"] = rng.choice(ROLES)
        now = day.replace(hour=rng.randrange(24), minute=rng.randrange(60))
        calls.append(ToolCall(tool, arguments, context, now))
    return calls


def upload_check(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether the document passes the upload limits, loaded as an upload is (JSON)."""
    text = json.dumps({"version": "1.0", "rules": rules})
    check: dict[str, Any] = {"bytes": len(text.encode()), "within_upload_limits": True}
    try:
        load_rule_set(text, content_type="application/json", limits=DEFAULT_LIMITS)
    except RuleSetTooLarge as exc:
        check.update(within_upload_limits=False, limit=exc.limit, maximum=exc.maximum, actual=exc.actual)
    except RuleSetError as exc:  # a generator bug, not a limit
        raise SystemExit(f"generated document refused: {exc.problems[:3]}") from exc
    return check


def measure(
    rules: list[dict[str, Any]], calls: list[ToolCall], repeat: int, *, indexed: bool
) -> dict[str, Any]:
    started = time.perf_counter()
    document = normalize_rule_set({"version": "1.0", "rules": rules}, limits=STORED_LIMITS)
    compiled = compile_rule_set(document, indexed=indexed)
    compile_seconds = time.perf_counter() - started
    evaluate = compiled.evaluate
    decisions = [evaluate(call) for call in calls]  # warm-up, and what was decided
    applicable = statistics.fmean(len(compiled.rules_for(call.tool_name)) for call in calls)
    visited = statistics.fmean(len(compiled.rules_to_visit(call)) for call in calls)

    clock = time.perf_counter_ns
    best_mean = float("inf")
    best_per_call = [float("inf")] * len(calls)
    gc.collect()
    gc.disable()  # a collection pass inside one timed call is not the engine's cost
    try:
        for _ in range(repeat):
            started_ns = clock()
            for call in calls:
                evaluate(call)
            best_mean = min(best_mean, (clock() - started_ns) / len(calls))
            for index, call in enumerate(calls):
                began = clock()
                evaluate(call)
                elapsed = clock() - began
                if elapsed < best_per_call[index]:
                    best_per_call[index] = elapsed
    finally:
        gc.enable()
    ordered = sorted(best_per_call)
    return {
        "compile_ms": round(compile_seconds * 1e3, 1),
        # Each call's best of the repeats, averaged: a pass preempted on a shared machine (the
        # whole pass's mean, kept as pass_mean_us) moves this far less.
        "mean_us": round(statistics.fmean(best_per_call) / 1e3, 2),
        "pass_mean_us": round(best_mean / 1e3, 2),
        "p50_us": round(ordered[len(ordered) // 2] / 1e3, 2),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e3, 2),
        "applicable_rules": round(applicable, 1),
        "visited_rules": round(visited, 1),
        "decided_by_rule": sum(1 for d in decisions if d.rule_id),
        # Equal before and after an engine change that must not change what is decided.
        "decisions_sha256": hashlib.sha256(
            json.dumps([[d.decision, d.rule_id, d.noted_rule_ids] for d in decisions]).encode()
        ).hexdigest(),
    }


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """The machine and the code measured: CPU, memory, load before and after, git commit."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        info["cpu"] = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None
        )
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        info["memory_kib"] = next(
            (int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), None
        )
    except OSError:
        pass
    info["load_before"], info["load"] = load_before, os.getloadavg()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True
    )
    info["git_commit"] = commit.stdout.strip() or None
    return info


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="10,100,1000,10000")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20261214)
    parser.add_argument(
        "--unindexed", action="store_true", help="visit every rule of the tool (the engine before issue 14)"
    )
    parser.add_argument("--note", default="", help="recorded with the results (e.g. 'shared machine')")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "engine-by-rule-count.json"))
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    load_before = os.getloadavg()

    results: list[dict[str, Any]] = []
    for family, generate in (("ir", ir_rule_set), ("when", when_rule_set)):
        for count in counts:
            rng = random.Random(f"{args.seed}-{family}-{count}")
            rules, by_tool = generate(count, rng)
            calls = workload(args.calls, by_tool, rng)
            row: dict[str, Any] = {"family": family, "rules": count, "tools": len(by_tool)}
            row.update(upload_check(rules))
            row.update(measure(rules, calls, args.repeat, indexed=not args.unindexed))
            results.append(row)
            print(
                f"  {family:4} {count:>6} rules: {row['mean_us']:7.2f} us mean", file=sys.stderr, flush=True
            )

    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}; {args.calls} calls, best of {args.repeat}")  # fmt: skip
    print(
        "| set | rules | tools | applicable / call | visited / call | decided by a rule | upload limits | mean µs | p50 µs | p99 µs | × 10 rules |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for row in results:
        base = next(r for r in results if r["family"] == row["family"] and r["rules"] == min(counts))
        limits = (
            "within"
            if row["within_upload_limits"]
            else f"over {row['limit']} ({row['actual']:,} > {row['maximum']:,})"
        )
        row["ratio_to_smallest"] = round(row["mean_us"] / base["mean_us"], 2)
        print(
            f"| {row['family']} | {row['rules']:,} | {row['tools']:,} | {row['applicable_rules']} | {row['visited_rules']} | "
            f"{row['decided_by_rule'] / args.calls:.0%} | {limits} | "
            f"{row['mean_us']:.2f} | {row['p50_us']:.2f} | {row['p99_us']:.2f} | {row['ratio_to_smallest']:.2f} |"
        )
    for family in ("ir", "when"):
        at = {r["rules"]: r for r in results if r["family"] == family}
        if 10 in at and 1000 in at:
            ratio = at[1000]["mean_us"] / at[10]["mean_us"]
            print(
                f"{family}: 1,000 rules cost {ratio:.2f}x 10 rules (goal: at most 2x): {'met' if ratio <= 2 else 'not met'}"
            )

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "benchmark": "engine_by_rule_count",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(load_before),
        "note": args.note,
        "engine": "unindexed (every rule of the tool)" if args.unindexed else "indexed by tool and argument",
        "args": vars(args),
        "results": results,
    }
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
