#!/usr/bin/env python
"""Our validate beside a real peer in the same run: the Cerbos PDP, audit off and on (issue 14).

What it does:

1. Prepares our side exactly as ``validate_throughput.py`` does: a fresh PostgreSQL database,
   migrated and seeded (demo team, key and rule set), the server started as production starts it
   (``python -m veto_cloud.serve``, DEBUG off, PostgreSQL + Redis).
2. Installs the Cerbos PDP on demand (npm package ``@cerbos/cerbos-linux-x64``, pinned, into
   ``benchmarks/.cerbos``, not committed) and starts two Cerbos servers on disk storage with the
   demo rule set translated into Cerbos resource policies (CEL conditions): one with audit off,
   one writing decision logs to a file (the ``file`` backend; access logs off in both).
3. Checks that both sides decide alike before anything is timed: each probe call goes through
   ``POST /v1/tools/validate`` and ``POST /api/check/resources`` and the decisions must match
   (Cerbos has only ALLOW and DENY: our ``require_approval`` is a DENY whose rule outputs
   ``{"decision": "require_approval", ...}``, the caller acts on it).
4. Drives four targets with wrk (32 keep-alive connections, a Lua script for the POST bodies),
   interleaved: every round runs each target once, and the order is reversed every other round,
   so that a drift of this shared machine does not favour one target:
   our ``GET /healthz``, our ``POST /v1/tools/validate`` (validate_throughput's mix: 80 % allow,
   10 % deny, 10 % require_approval), Cerbos ``POST /api/check/resources`` audit off, and audit on.
5. Durability: after each validate run the decision rows added during it must cover every answer
   (up to one in-flight request per connection may be recorded but not counted), as in
   validate_throughput. For Cerbos with audit on, the decision lines its file gained are counted
   too, for information (Cerbos writes them after answering, see README).

Prints a markdown table (medians over the rounds) with the ratios validate/healthz and
cerbos/healthz (medians of the per-round ratios, min-max), and writes every run to
``benchmarks/results/validate-vs-cerbos-<date>.json`` (or ``--json``).

Usage:  .venv/bin/python benchmarks/validate_vs_cerbos.py [--duration 10] [--rounds 6]
Needs:  wrk, npm (only the first time, to install Cerbos), PostgreSQL and Redis via DATABASE_URL /
        REDIS_URL (defaults: .../veto_bench and Redis db 14, as validate_throughput).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_throughput import (  # noqa: E402
    API_KEY,
    CONNECTIONS,
    ROOT,
    VALIDATE_BODIES,
    decision_count,
    free_port,
    lua_for,
    machine,
    run_wrk,
    seeded_environment,
    start_server,
    stop_server,
)

CERBOS_PACKAGE = "@cerbos/cerbos-linux-x64"
CERBOS_VERSION = "0.55.0"
CERBOS_DIR = ROOT / "benchmarks" / ".cerbos"
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = ("healthz", "validate", "cerbos_audit_off", "cerbos_audit_file")
LABELS = {
    "healthz": "Veto `GET /healthz` (gateway, no work)",
    "validate": "Veto `POST /v1/tools/validate` (decided, chained, committed to PostgreSQL)",
    "cerbos_audit_off": "Cerbos `POST /api/check/resources`, audit off",
    "cerbos_audit_file": "Cerbos `POST /api/check/resources`, audit to a file",
}

# The demo rule set (policies/fixtures/demo_rules.yaml + seed_demo's quorum rule) as Cerbos
# resource policies: one per tool, action "call", every rule for every role. Our semantics kept:
# an absent field or one of another type never matches a comparison (hence the has()/type()
# guards: in Cerbos a CEL error makes a condition false, which for bucket_allowlist's negation
# would allow); ``.length`` is size(); JSON numbers arrive in Cerbos as doubles; the call's
# context (``custom`` fields merged at the top, as our engine reads ``context.x``) is the
# principal's attributes. DENY overrides ALLOW in Cerbos, and every activated rule adds its output;
# the caller takes the first output in the rule set's order, as our first matching rule decides.
CERBOS_POLICIES = {
    "run_data_export.yaml": """\
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: run_data_export
  rules:
    - name: block_pii_exports
      actions: [call]
      effect: EFFECT_DENY
      roles: ["*"]
      condition:
        match:
          expr: has(R.attr.include_pii) && R.attr.include_pii == true
      output:
        when:
          ruleActivated: >-
            {"decision": "require_approval", "rule": "block_pii_exports",
             "approvers": ["compliance", "privacy-office"]}
    - name: bucket_allowlist
      actions: [call]
      effect: EFFECT_DENY
      roles: ["*"]
      condition:
        match:
          expr: >-
            !(has(R.attr.bucket) && type(R.attr.bucket) == string
              && R.attr.bucket.startsWith("internal-"))
      output:
        when:
          ruleActivated: >-
            {"decision": "deny", "rule": "bucket_allowlist",
             "message": "Exports restricted to internal-* S3 buckets"}
    - name: large_export_two_approvals
      actions: [call]
      effect: EFFECT_DENY
      roles: ["*"]
      condition:
        match:
          expr: >-
            has(R.attr.row_count) && type(R.attr.row_count) == double
            && R.attr.row_count > 100000.0
      output:
        when:
          ruleActivated: >-
            {"decision": "require_approval", "rule": "large_export_two_approvals",
             "approvers": ["compliance"], "min_approvals": 2}
    - name: default_allow
      actions: [call]
      effect: EFFECT_ALLOW
      roles: ["*"]
""",
    "deploy_workflow.yaml": """\
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: deploy_workflow
  rules:
    - name: workflow_deploy_approval
      actions: [call]
      effect: EFFECT_DENY
      roles: ["*"]
      condition:
        match:
          expr: has(P.attr.environment) && P.attr.environment == "production"
      output:
        when:
          ruleActivated: >-
            {"decision": "require_approval", "rule": "workflow_deploy_approval",
             "approvers": ["engineering-leads"]}
    - name: workflow_definition_size
      actions: [call]
      effect: EFFECT_DENY
      roles: ["*"]
      condition:
        match:
          expr: >-
            has(R.attr.definition) && type(R.attr.definition) == string
            && size(R.attr.definition) > 200000
      output:
        when:
          ruleActivated: '{"decision": "deny", "rule": "workflow_definition_size"}'
    - name: default_allow
      actions: [call]
      effect: EFFECT_ALLOW
      roles: ["*"]
""",
    "fetch_external_api.yaml": """\
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: fetch_external_api
  rules:
    - name: strip_api_key_in_args
      actions: [call]
      effect: EFFECT_DENY
      roles: ["*"]
      condition:
        match:
          expr: has(R.attr.api_key) && R.attr.api_key != null
      output:
        when:
          ruleActivated: >-
            {"decision": "deny", "rule": "strip_api_key_in_args",
             "message": "API keys must come from a secret store, not from the model"}
    - name: default_allow
      actions: [call]
      effect: EFFECT_ALLOW
      roles: ["*"]
""",
}
# Our document order, to pick the deciding output when several Cerbos rules activated.
RULE_ORDER = [
    "block_pii_exports",
    "bucket_allowlist",
    "workflow_deploy_approval",
    "workflow_definition_size",
    "strip_api_key_in_args",
    "large_export_two_approvals",
]
# Calls the two sides must decide alike before timing: the timed mix, and one for each rule it
# does not reach.
PROBE_BODIES = [
    *{json.dumps(b, sort_keys=True): b for b in VALIDATE_BODIES}.values(),
    {"tool_name": "run_data_export", "arguments": {"bucket": "internal-x", "include_pii": True}},
    {"tool_name": "run_data_export", "arguments": {"bucket": "internal-x", "row_count": 200000}},
    {"tool_name": "run_data_export", "arguments": {"rows": 5}},
    {"tool_name": "deploy_workflow", "arguments": {"definition": "x" * 200001}},
    {"tool_name": "deploy_workflow", "arguments": {"definition": "{}"}, "context": {"environment": "dev"}},
    {"tool_name": "fetch_external_api", "arguments": {"url": "https://x.invalid", "api_key": "k"}},
    {"tool_name": "fetch_external_api", "arguments": {"url": "https://x.invalid"}},
]


def cerbos_request(body: dict[str, Any]) -> dict[str, Any]:
    """The Cerbos check for one validate body: the call's arguments are the resource's
    attributes, its context the principal's."""
    context = dict(body.get("context") or {})
    custom = context.pop("custom", None)
    attributes = {**(custom if isinstance(custom, dict) else {}), **context}
    return {
        "requestId": "bench",
        "principal": {
            "id": str(context.get("agent_id") or "anonymous"),
            "roles": ["agent"],
            "attr": attributes,
        },
        "resources": [
            {
                "actions": ["call"],
                "resource": {
                    "kind": body["tool_name"],
                    "id": str(context.get("session_id") or "call"),
                    "attr": body.get("arguments") or {},
                },
            }
        ],
    }


def cerbos_decision(answer: dict[str, Any]) -> str:
    """Our decision from a Cerbos answer: ALLOW is allow; a DENY is what its first output says."""
    result = answer["results"][0]
    if result["actions"]["call"] == "EFFECT_ALLOW":
        return "allow"
    outputs = sorted(
        (o["val"] for o in result.get("outputs") or []),
        key=lambda val: RULE_ORDER.index(val["rule"]),
    )
    return str(outputs[0]["decision"]) if outputs else "deny"


def post_json(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as error:
        raise SystemExit(
            f"{url} answered {error.code} to {json.dumps(body)[:300]}: {error.read()[:1000]!r}"
        ) from None


def cerbos_binary(explicit: str | None) -> Path:
    """The Cerbos binary: --cerbos-bin, or the pinned npm package, installed on first use."""
    if explicit:
        return Path(explicit)
    binary = CERBOS_DIR / "node_modules" / "@cerbos" / "cerbos-linux-x64" / "cerbos-linux-x64"
    installed = binary.parent / "package.json"
    if not (binary.exists() and json.loads(installed.read_text()).get("version") == CERBOS_VERSION):
        if shutil.which("npm") is None:
            raise SystemExit("npm is needed once to install Cerbos (or pass --cerbos-bin)")
        print(f"installing {CERBOS_PACKAGE}@{CERBOS_VERSION} into {CERBOS_DIR}", flush=True)
        CERBOS_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(CERBOS_DIR),
                "--no-save",
                "--no-audit",
                "--no-fund",
                f"{CERBOS_PACKAGE}@{CERBOS_VERSION}",
            ],
            check=True,
        )
    return binary


def cerbos_config(workdir: Path, port: int, audit_file: Path | None) -> dict[str, Any]:
    audit: dict[str, Any] = {"enabled": False}
    if audit_file is not None:
        audit = {
            "enabled": True,
            "accessLogsEnabled": False,
            "decisionLogsEnabled": True,
            "backend": "file",
            "file": {"path": str(audit_file)},
        }
    return {
        "server": {
            "httpListenAddr": f"127.0.0.1:{port}",
            "grpcListenAddr": f"127.0.0.1:{free_port()}",
        },
        "storage": {
            "driver": "disk",
            "disk": {"directory": str(workdir / "policies"), "watchForChanges": False},
        },
        "audit": audit,
    }


def start_cerbos(binary: Path, workdir: Path, name: str, audit_file: Path | None) -> tuple[Any, str, dict]:
    """One Cerbos server in its own process group; return it once its health check answers."""
    port = free_port()
    config = cerbos_config(workdir, port, audit_file)
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    log = workdir / f"{name}.log"
    server = subprocess.Popen(
        [str(binary), "server", f"--config={config_path}", "--log-level=warn"],
        cwd=workdir,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if urllib.request.urlopen(f"{base}/_cerbos/health", timeout=1).status == 200:
                return server, base, config
        except OSError:
            time.sleep(0.1)
    os.killpg(server.pid, signal.SIGTERM)
    raise SystemExit(f"Cerbos ({name}) did not start:\n{log.read_text()[-3000:]}")


def check_equivalence(veto: str, cerbos: str) -> list[dict[str, Any]]:
    """Each probe decided by both sides; exits if any differ."""
    checks = []
    for body in PROBE_BODIES:
        ours = post_json(f"{veto}/v1/tools/validate", body, {"X-Veto-API-Key": API_KEY})["decision"]
        theirs = cerbos_decision(post_json(f"{cerbos}/api/check/resources", cerbos_request(body)))
        # The call cut short: one probe carries a 200 KB definition.
        checks.append({"call": json.dumps(body)[:200], "veto": ours, "cerbos": theirs})
    differing = [c for c in checks if c["veto"] != c["cerbos"]]
    if differing:
        raise SystemExit(f"the two sides decide differently: {json.dumps(differing, indent=2)}")
    return checks


def postgresql_durability(url: str) -> dict[str, str]:
    """What a COMMIT waits for on this server: our answers wait for the COMMIT."""
    with psycopg.connect(url) as conn:
        return {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "wal_sync_method")
        }


def line_count(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per target and round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds; the order reverses every other one")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per target")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cerbos-bin", help="a Cerbos binary to use instead of the npm package")
    parser.add_argument("--json", type=Path, help="where to write the results (default: benchmarks/results/)")
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install -y wrk", file=sys.stderr)
        return 2
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veto_bench")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    if not database_url.startswith("postgres"):
        print("the benchmark runs on PostgreSQL: set DATABASE_URL to a postgres:// URL", file=sys.stderr)
        return 2
    binary = cerbos_binary(args.cerbos_bin)
    cerbos_version = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[0]

    env = seeded_environment(database_url, redis_url)
    port = free_port()
    env.update(PORT=str(port), WEB_CONCURRENCY=str(args.workers))
    veto = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="veto-cerbos-"))
    (workdir / "policies").mkdir()
    for name, text in CERBOS_POLICIES.items():
        (workdir / "policies" / name).write_text(text)
    audit_file = workdir / "audit" / "decisions.log"
    audit_file.parent.mkdir()

    servers: list[Any] = []
    results: dict[str, list[dict]] = {name: [] for name in TARGETS}
    try:
        server, veto_log = start_server([sys.executable, "-m", "veto_cloud.serve"], env, veto)
        servers.append(server)
        cerbos_off, cerbos_off_url, config_off = start_cerbos(binary, workdir, "cerbos-audit-off", None)
        servers.append(cerbos_off)
        cerbos_on, cerbos_on_url, config_on = start_cerbos(binary, workdir, "cerbos-audit-file", audit_file)
        servers.append(cerbos_on)

        try:
            checks = check_equivalence(veto, cerbos_off_url)
        except SystemExit:
            print(veto_log.read_text()[-3000:], file=sys.stderr)
            raise
        check_equivalence(veto, cerbos_on_url)
        print(f"decisions agree on {len(checks)} probe calls", flush=True)

        scripts = workdir
        validate_lua = scripts / "validate.lua"
        validate_lua.write_text(
            lua_for(
                "/v1/tools/validate",
                VALIDATE_BODIES,
                {"Content-Type": "application/json", "X-Veto-API-Key": API_KEY},
            )
        )
        cerbos_lua = scripts / "cerbos.lua"
        cerbos_lua.write_text(
            lua_for(
                "/api/check/resources",
                [cerbos_request(b) for b in VALIDATE_BODIES],
                {"Content-Type": "application/json"},
            )
        )
        runs = {
            "healthz": lambda seconds: run_wrk(f"{veto}/healthz", seconds),
            "validate": lambda seconds: run_wrk(f"{veto}/v1/tools/validate", seconds, validate_lua),
            "cerbos_audit_off": lambda seconds: run_wrk(
                f"{cerbos_off_url}/api/check/resources", seconds, cerbos_lua
            ),
            "cerbos_audit_file": lambda seconds: run_wrk(
                f"{cerbos_on_url}/api/check/resources", seconds, cerbos_lua
            ),
        }
        print("warming up", flush=True)
        for name in TARGETS:
            runs[name](args.warmup)

        for round_number in range(1, args.rounds + 1):
            order = TARGETS if round_number % 2 else tuple(reversed(TARGETS))
            line = []
            for name in order:
                rows_before = decision_count(database_url) if name == "validate" else 0
                lines_before = line_count(audit_file) if name == "cerbos_audit_file" else 0
                outcome = runs[name](args.duration)
                if name in ("validate", "cerbos_audit_file"):
                    time.sleep(0.5)  # let the last in-flight commits / background writes land
                if name == "validate":
                    outcome["rows_recorded"] = decision_count(database_url) - rows_before
                if name == "cerbos_audit_file":
                    outcome["audit_lines_written"] = line_count(audit_file) - lines_before
                outcome["round"] = round_number
                outcome["position"] = order.index(name) + 1
                results[name].append(outcome)
                line.append(f"{name} {outcome['rps']:.0f}/s p99 {outcome['p99_ms']:.1f} ms")
            validate = results["validate"][-1]
            print(
                f"round {round_number}: " + ", ".join(line) + f"; validate rows {validate['rows_recorded']} "
                f"for {validate['requests']} answers",
                flush=True,
            )
    finally:
        for server in reversed(servers):
            if isinstance(server, subprocess.Popen):
                stop_server(server)
        shutil.rmtree(workdir, ignore_errors=True)

    def per_round_ratio(name: str) -> list[float]:
        return [r["rps"] / h["rps"] for r, h in zip(results[name], results["healthz"], strict=True)]

    ratios = {f"{name}/healthz": per_round_ratio(name) for name in TARGETS[1:]}
    validate_ok = all(
        r["socket_errors"] == 0
        and r["non_2xx"] == 0
        and r["requests"] <= r["rows_recorded"] <= r["requests"] + CONNECTIONS
        for r in results["validate"]
    )
    cerbos_ok = all(
        r["socket_errors"] == 0 and r["non_2xx"] == 0
        for name in ("cerbos_audit_off", "cerbos_audit_file")
        for r in results[name]
    )
    summary = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "veto": {
            "server": f"uvicorn, {args.workers} worker(s)",
            "postgresql": postgresql_durability(database_url),
            "body_mix": "validate_throughput.VALIDATE_BODIES",
        },
        "cerbos": {
            "version": cerbos_version,
            "package": f"{CERBOS_PACKAGE}@{CERBOS_VERSION}",
            "config_audit_off": config_off,
            "config_audit_file": config_on,
            "policies": CERBOS_POLICIES,
        },
        "equivalence_checks": checks,
        "connections": CONNECTIONS,
        "seconds_per_run": args.duration,
        "rounds": args.rounds,
        "order": "each round runs every target; the order reverses every other round",
        "runs": results,
        "median": {
            name: {
                key: statistics.median(r[key] for r in results[name])
                for key in ("rps", "p50_ms", "p90_ms", "p99_ms")
            }
            for name in TARGETS
        },
        "ratios_per_round": ratios,
        "every_validate_answer_recorded_no_errors": validate_ok,
        "cerbos_no_errors": cerbos_ok,
    }
    out = args.json or RESULTS / f"validate-vs-cerbos-{summary['date']}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")

    print(f"\n{args.rounds} round(s) of {args.duration} s per target, {CONNECTIONS} connections; medians")
    print("| target | req/s | p50 ms | p99 ms | ÷ healthz (per round: median, min-max) |")
    print("|---|---:|---:|---:|---:|")
    for name in TARGETS:
        m = summary["median"][name]
        ratio = "1" if name == "healthz" else _ratio_text(ratios[f"{name}/healthz"])
        print(f"| {LABELS[name]} | {m['rps']:,.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {ratio} |")
    audit_runs = results["cerbos_audit_file"]
    print(
        f"\nvalidate: every answer recorded, zero errors: {validate_ok} "
        f"(rows {sum(r['rows_recorded'] for r in results['validate'])} for "
        f"{sum(r['requests'] for r in results['validate'])} answers); "
        f"Cerbos: zero errors: {cerbos_ok}, audit lines {sum(r['audit_lines_written'] for r in audit_runs)} "
        f"for {sum(r['requests'] for r in audit_runs)} answers (written after answering, not fsynced)"
    )
    print(f"raw results: {out}")
    return 0 if validate_ok and cerbos_ok else 1


def _ratio_text(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    sys.exit(main())
