#!/usr/bin/env python
"""CPU cost of one rule-set document at the published limits (settings RULE_SET_MAX_*).

Builds documents that sit at the limits (most rules, most bytes, most fixture tests) in the
shapes that cost most per byte (when: expressions and conditions, which compile, and regexes)
and times, in CPU seconds (best of --repeat), what an upload and the editor's check do:
parse + check (``load_rule_set``), compile, and run the fixtures.

    .venv/bin/python benchmarks/rule_set_limits.py [--repeat 3] [--json benchmarks/results/rule_set_limits.json]

Issue 10, finding 11: a 480 KB, 4,900-rule document cost ~8 s of CPU; the limits are chosen
so that one document costs well under a second.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.engine import compile_rule_set, load_rule_set, run_fixtures  # noqa: E402
from policies.engine.expressions import compile_when, warm_up  # noqa: E402
from policies.engine.source import DEFAULT_LIMITS, Limits  # noqa: E402


def short_form_rule(i: int) -> str:
    return (
        f"  - name: rule_{i:05d}\n"
        f"    tool: tool_{i % 50}\n"
        f"    when: \"args.amount > {i} && context.user_id != 'u{i}' && args.region.startsWith('eu-')\"\n"
        f"    action: deny\n"
        f"    message: Rule {i} denies large amounts outside the EU for this tool\n"
    )


def ir_rule(i: int) -> str:
    return (
        f"  - id: ir_{i:05d}\n"
        f"    action: require_approval\n"
        f"    tools: [tool_{i % 50}, other_{i % 7}]\n"
        f"    conditions:\n"
        f"      - {{field: arguments.amount, operator: greater_than, value: {i}}}\n"
        f"      - {{field: arguments.path, operator: matches, value: '^/srv/(a|b|c)/{i}[0-9]+$'}}\n"
        f"      - {{field: arguments.bucket, operator: in, value: [internal-a, internal-b, internal-{i}]}}\n"
    )


def fixtures(count: int) -> str:
    tests = "".join(
        f"      - {{id: t{j}, tool: tool_{j % 50}, arguments: {{amount: {j}, region: eu-west}}, "
        f"expect: {{decision: allow}}}}\n"
        for j in range(count)
    )
    return f"fixtures:\n  - suite: s\n    tests:\n{tests}"


def long_when_rule(i: int) -> str:
    clauses = " && ".join(f"args.a{j} > {i + j}" for j in range(120))
    return f'  - name: long_{i:05d}\n    tool: tool_{i % 50}\n    action: deny\n    when: "{clauses}"\n'


def no_when_rule(i: int) -> str:
    return f"  - {{name: plain_{i:05d}, tool: tool_{i % 50}, action: deny, message: Rule {i} says no}}\n"


WHEN = re.compile(r'when: "(.*)"')


def document(rule: object, limits: Limits, *, with_fixtures: bool) -> str:
    """As many rules of this shape as the limits (rules, bytes, expression characters) allow."""
    tail = fixtures(limits.max_fixture_tests) if with_fixtures else ""
    budget = limits.max_bytes - len(tail.encode()) - len("rules:\n")
    rules: list[str] = []
    used = expression_chars = 0
    while len(rules) < limits.max_rules:
        text = rule(len(rules))  # type: ignore[operator]
        when = WHEN.search(text)
        chars = len(when.group(1)) if when else 0
        if used + len(text.encode()) > budget or expression_chars + chars > limits.max_expression_chars:
            break
        rules.append(text)
        used += len(text.encode())
        expression_chars += chars
    return "rules:\n" + "".join(rules) + tail


def cpu(function: object, repeat: int, *, before: object = None) -> float:
    best = float("inf")
    for _ in range(repeat):
        if before is not None:
            before()  # type: ignore[operator]
        started = time.process_time()
        function()  # type: ignore[operator]
        best = min(best, time.process_time() - started)
    return best


def cold() -> None:
    # Every when: compiled afresh, as for a document this process has not seen.
    compile_when.cache_clear()


def measure(name: str, source: str, limits: Limits, repeat: int) -> dict[str, object]:
    document_ = load_rule_set(source, limits=limits)
    compiled = compile_rule_set(document_)
    now = datetime.now(UTC)
    row: dict[str, object] = {
        "document": name,
        "bytes": len(source.encode()),
        "rules": len(document_["rules"]),
        "fixture_tests": sum(len(s["tests"]) for s in document_.get("fixtures", [])),
        # POST /v1/rule-sets: parse and check (which compiles each when:) a document new here
        "load_s": round(cpu(lambda: load_rule_set(source, limits=limits), repeat, before=cold), 3),
        # then, in the same process (the editor's check, publish): its when:s are compiled
        "compile_after_load_s": round(cpu(lambda: compile_rule_set(document_), repeat), 3),
        # in a worker that has not seen it (after a publish)
        "compile_cold_s": round(cpu(lambda: compile_rule_set(document_), repeat, before=cold), 3),
        "fixtures_s": round(
            cpu(lambda: run_fixtures(compiled, document_.get("fixtures", []), now=now), repeat), 3
        ),
    }
    row["editor_check_s"] = round(
        float(row["load_s"]) + float(row["compile_after_load_s"]) + float(row["fixtures_s"]), 3
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    warm_up()
    limits = DEFAULT_LIMITS
    shapes = [
        ("short form, when: on every rule", short_form_rule, False),
        ("short form, the longest when:s", long_when_rule, False),
        ("Policy IR, conditions and regexes", ir_rule, False),
        ("no when:, most rules", no_when_rule, False),
        ("short form + most fixture tests", short_form_rule, True),
    ]
    rows = [
        measure(name, document(rule, limits, with_fixtures=tests), limits, options.repeat)
        for name, rule, tests in shapes
    ]
    for row in rows:
        print(json.dumps(row))
    if options.json:
        options.json.write_text(
            json.dumps(
                {
                    "limits": {k: getattr(limits, k) for k in limits.__slots__},
                    "python": platform.python_version(),
                    "machine": platform.machine(),
                    "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
