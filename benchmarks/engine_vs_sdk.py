#!/usr/bin/env python
"""The server's rule engine against the published SDK's local engine, same rules, same calls.

A seeded, generated Policy IR v1 rule set of 100 rules over 10 tools (most rules scoped
to a tool, some global; every operator; conditions and condition groups; several actions)
and 1,000 calls. Both engines decide every call; the decisions and deciding rules must be
identical, then each is timed per decision (best of --repeat runs).

    .venv/bin/python benchmarks/engine_vs_sdk.py [--rules 100] [--calls 1000]

SDK side: ``await Veto.from_rules(rules=...).guard(tool, args)``, the SDK's local decision
path (what an agent using the SDK without a server pays per call). Server side:
``CompiledRuleSet.evaluate(ToolCall(...))``. Goal (issue 3): at least 5x faster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veto_cloud.settings.test")

from veto import Veto  # noqa: E402

from policies.engine import ToolCall, compile_rule_set, normalize_rule_set  # noqa: E402

TOOLS = [f"tool_{i}" for i in range(10)]
KEYS = ["amount", "bucket", "recipient", "path", "tags", "region"]
WORDS = ["internal-a", "public", "secret", "eu-west", "us-east", "/etc/passwd", "/home/a", "ops@x.invalid"]


def condition(rng: random.Random) -> dict:
    key = rng.choice(KEYS)
    kind = rng.randrange(8)
    if kind == 0:
        return {"field": f"arguments.{key}", "operator": "equals", "value": rng.choice(WORDS)}
    if kind == 1:
        return {"field": f"arguments.{key}", "operator": "greater_than", "value": rng.randint(0, 1000)}
    if kind == 2:
        return {"field": f"arguments.{key}", "operator": "in", "value": rng.sample(WORDS, 3)}
    if kind == 3:
        return {
            "field": f"arguments.{key}",
            "operator": "starts_with",
            "value": rng.choice(["/etc", "internal", "eu"]),
        }
    if kind == 4:
        return {
            "field": f"arguments.{key}",
            "operator": "contains",
            "value": rng.choice(["secret", "@", "west"]),
        }
    if kind == 5:
        return {
            "field": f"arguments.{key}",
            "operator": "matches",
            "value": rng.choice([r"^/etc/", r"\d{4}", "@x\\."]),
        }
    if kind == 6:
        return {"field": f"arguments.{key}", "operator": "length_greater_than", "value": rng.randint(1, 4)}
    return {"field": f"arguments.{key}", "operator": "less_than", "value": rng.randint(0, 100)}


def rule_set(count: int, rng: random.Random) -> list[dict]:
    rules = []
    for i in range(count):
        rule: dict = {
            "id": f"rule-{i}",
            "name": f"rule {i}",
            "severity": rng.choice(["low", "medium", "high"]),
            "action": rng.choice(["block", "block", "require_approval", "allow", "warn", "log"]),
        }
        if rng.random() < 0.9:
            rule["tools"] = [rng.choice(TOOLS)]
        if rng.random() < 0.7:
            rule["conditions"] = [condition(rng) for _ in range(rng.randint(1, 3))]
        else:
            rule["condition_groups"] = [[condition(rng) for _ in range(rng.randint(1, 2))] for _ in range(2)]
        rules.append(rule)
    return rules


def calls(count: int, rng: random.Random) -> list[tuple[str, dict]]:
    generated = []
    for _ in range(count):
        arguments = {}
        for key in rng.sample(KEYS, rng.randint(1, 4)):
            arguments[key] = rng.choice(
                [*WORDS, rng.randint(0, 2000), [rng.choice(WORDS)] * rng.randint(0, 5)]
            )
        generated.append((rng.choice(TOOLS), arguments))
    return generated


async def sdk_decisions(veto: Veto, workload: list[tuple[str, dict]]) -> list[tuple[str, str | None]]:
    results = []
    for tool, arguments in workload:
        result = await veto.guard(tool, arguments)
        results.append((result.decision, result.rule_id))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--json", type=Path, help="also write the figures here (benchmarks/run_all.py does)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    rules = rule_set(args.rules, rng)
    workload = calls(args.calls, rng)
    now = datetime.now(UTC)

    veto = Veto.from_rules(rules=rules, log_level="silent")
    compiled = compile_rule_set(normalize_rule_set({"version": "1.0", "rules": rules}))

    expected = asyncio.run(sdk_decisions(veto, workload))
    actual = [
        (d.decision, d.rule_id) for d in (compiled.evaluate(ToolCall(t, a, {}, now)) for t, a in workload)
    ]
    if actual != expected:
        mismatches = sum(1 for a, b in zip(actual, expected, strict=True) if a != b)
        print(f"the engines disagree on {mismatches} of {len(workload)} calls", file=sys.stderr)
        return 1

    def time_sdk() -> float:
        veto_run = Veto.from_rules(rules=rules, log_level="silent")
        started = time.perf_counter()
        asyncio.run(sdk_decisions(veto_run, workload))
        return (time.perf_counter() - started) / len(workload)

    def time_ours() -> float:
        started = time.perf_counter()
        for tool, arguments in workload:
            compiled.evaluate(ToolCall(tool, arguments, {}, now))
        return (time.perf_counter() - started) / len(workload)

    sdk = min(time_sdk() for _ in range(args.repeat))
    ours = min(time_ours() for _ in range(args.repeat))
    decided = sum(1 for _, rule_id in expected if rule_id)
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(
        f"{args.rules} rules over {len(TOOLS)} tools, {args.calls} calls ({decided} decided by a rule), identical decisions"
    )
    print(f"SDK  Veto.guard():              {sdk * 1e6:8.2f} us per decision")
    print(f"server CompiledRuleSet.evaluate: {ours * 1e6:8.2f} us per decision")
    print(f"speed-up: {sdk / ours:.1f}x (goal: at least 5x)")
    if args.json:
        report = {
            "benchmark": "engine_vs_sdk",
            "machine": {
                "cpus": os.cpu_count(),
                "cpu": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "load_average": list(os.getloadavg()),
            },
            "rules": args.rules,
            "calls": args.calls,
            "repeat": args.repeat,
            "decided_by_a_rule": decided,
            "identical_decisions": True,
            "sdk_us": round(sdk * 1e6, 2),
            "server_us": round(ours * 1e6, 2),
            "speedup": round(sdk / ours, 2),
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
