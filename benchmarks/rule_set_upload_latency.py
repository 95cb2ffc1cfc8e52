#!/usr/bin/env python
"""What rule-set uploads at the limits do to everyone else's latency, on a live server.

Starts the web server as ``python -m veto_cloud.serve`` runs it (one uvicorn worker, embedded
defaults, a scratch VETO_VAR_DIR), seeds the demo team, then measures GET /healthz and
POST /v1/tools/validate latency one request at a time: first alone, then while another client
uploads the costliest document at the limits (benchmarks/rule_set_limits.py) back to back.

    .venv/bin/python benchmarks/rule_set_upload_latency.py [--seconds 6] [--json PATH]

Issue 10, finding 11: a 480 KB upload slowed other requests to 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.rule_set_limits import document, long_when_rule, short_form_rule  # noqa: E402
from policies.engine.source import DEFAULT_LIMITS  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def probe(client: httpx.Client, seconds: float) -> dict[str, dict[str, float]]:
    """Alternate /healthz and validate, one at a time, for ``seconds``."""
    health: list[float] = []
    validate: list[float] = []
    body = {"tool_name": "run_data_export", "arguments": {"bucket": "internal-reports"}, "context": {}}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        health.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert client.post("/v1/tools/validate", json=body).status_code == 200
        validate.append(time.perf_counter() - started)
    return {"GET /healthz": percentiles(health), "POST /v1/tools/validate": percentiles(validate)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="veto-upload-latency-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    port = free_port()
    env.update(VETO_VAR_DIR=str(scratch), PORT=str(port), DJANGO_SETTINGS_MODULE="veto_cloud.settings.local")
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    key = "veto_bench_" + os.urandom(16).hex()
    env["VETO_DEMO_API_KEY"] = key
    subprocess.run([python, "manage.py", "seed_demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    server = subprocess.Popen(
        [python, "-m", "veto_cloud.serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        headers = {"X-Veto-API-Key": key}
        documents = {
            "the longest when:s": document(long_when_rule, DEFAULT_LIMITS, with_fixtures=False),
            "when: on every rule": document(short_form_rule, DEFAULT_LIMITS, with_fixtures=False),
        }
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            probe(client, 1.0)  # warm up
            results: dict[str, object] = {"alone": probe(client, options.seconds)}
            for name, source in documents.items():
                stop = threading.Event()
                uploads: list[float] = []

                def upload(
                    source: str = source, stop: threading.Event = stop, uploads: list[float] = uploads
                ) -> None:
                    with httpx.Client(base_url=base, headers=headers, timeout=60) as uploader:
                        while not stop.is_set():
                            # A document the server has not seen (no compiled when: to reuse), of
                            # the same size: args.a... becomes args.b..., args.c..., and so on.
                            letter = "bcdefghijklmnopqrstuvwxyzBCDEFGHIJKLMNOPQRSTUVWXYZ"[len(uploads) % 50]
                            fresh = source.replace("args.a", f"args.{letter}")
                            started = time.perf_counter()
                            response = uploader.post(
                                "/v1/rule-sets", content=fresh, headers={"Content-Type": "application/yaml"}
                            )
                            assert response.status_code == 201, response.text[:300]
                            uploads.append(time.perf_counter() - started)

                thread = threading.Thread(target=upload)
                thread.start()
                time.sleep(0.5)
                try:
                    during = probe(client, options.seconds)
                finally:
                    stop.set()
                    thread.join()
                results[f"while uploading: {name} ({len(source.encode())} bytes)"] = {
                    **during,
                    "upload": percentiles(uploads),
                }
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if options.json:
        options.json.write_text(
            json.dumps(
                {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
