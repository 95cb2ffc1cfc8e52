"""VETO_LOG_FORMAT=json on real processes: the web server (uvicorn, the gateway, Django behind it)
and a Celery worker and beat write one JSON object per log line, and a request's lines carry the
id its answer echoes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import BASE_DIR, start_asgi_server, stop_processes, subprocess_environment

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]


def _json_lines(text: str) -> list[dict[str, object]]:
    """Every line of ``text`` read as a JSON object (a line that is not one fails the test)."""
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}\n--- whole log:\n{text}")
    return lines


def _wait_for(path: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} not in {path.name}:\n{path.read_text(errors='replace')}")
        time.sleep(0.2)


def test_web_server__json_format__every_line_json_and_the_requests_id_on_its_line(tmp_path, monkeypatch):
    # Given the web server started with VETO_LOG_FORMAT=json at INFO (uvicorn says it started);
    # its command line is built here (veto_cloud.serve.uvicorn_options), so the format is set here too
    monkeypatch.setenv("VETO_LOG_FORMAT", "json")
    monkeypatch.setenv("VETO_VAR_DIR", str(tmp_path))
    process, server = start_asgi_server(
        tmp_path / "server.log", VETO_LOG_FORMAT="json", LOG_LEVEL="INFO", VETO_VAR_DIR=str(tmp_path)
    )
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            # When a client names its request and Django answers it (a 404 it logs), and another
            # request comes without an id
            named = client.get("/v1/no-such-thing", headers={"X-Request-ID": "live-req-1"})
            unnamed = client.get("/v1/no-such-thing-either")
            health = client.get("/healthz", headers={"X-Request-ID": "bad id!"})
    finally:
        stop_processes(process)
    # Then the answers echo the ids (the malformed one replaced)
    assert (named.status_code, named.headers["x-request-id"]) == (404, "live-req-1")
    made = unnamed.headers["x-request-id"]
    assert len(made) == 32
    assert health.headers["x-request-id"] not in ("bad id!", made)
    # And every line the server wrote is JSON, uvicorn's own included, with the request's id on
    # the line its request logged
    lines = _json_lines(server.log())
    assert any(
        line["logger"] == "uvicorn.error" and "Started server process" in str(line["message"])
        for line in lines
    )
    by_message = {line["message"]: line for line in lines}
    assert by_message["Not Found: /v1/no-such-thing"]["request_id"] == "live-req-1"
    assert by_message["Not Found: /v1/no-such-thing-either"]["request_id"] == made
    assert by_message["Not Found: /v1/no-such-thing"]["level"] == "WARNING"


def test_celery_worker_and_beat__json_format__their_log_lines_are_json(tmp_path):
    # Given a real worker and beat started with VETO_LOG_FORMAT=json (embedded broker), standard
    # error apart from standard output (where the worker prints its start banner)
    env = subprocess_environment(
        VETO_LOG_FORMAT="json", VETO_VAR_DIR=str(tmp_path), VETO_APPROVAL_SWEEP_SECONDS="1"
    )
    env.pop("REDIS_URL", None)
    celery = [sys.executable, "-m", "celery", "-A", "veto_cloud"]
    commands = {
        "worker": [*celery, "worker", "--pool", "solo", "--without-gossip", "--without-mingle"],
        "beat": [*celery, "beat", "--schedule", str(tmp_path / "beat-schedule")],
    }
    processes = []
    for name, command in commands.items():
        with (tmp_path / f"{name}.err").open("w") as err, (tmp_path / f"{name}.out").open("w") as out:
            processes.append(
                subprocess.Popen(
                    [*command, "--loglevel", "INFO"], cwd=BASE_DIR, env=env, stdout=out, stderr=err
                )
            )
    try:
        # When the worker has run a sweep beat sent
        _wait_for(tmp_path / "worker.err", "approvals.tasks.expire_due_approvals")
        _wait_for(tmp_path / "worker.err", "succeeded")
    finally:
        stop_processes(*processes)
    # Then every line either wrote to standard error is JSON, the task's lines with its id and name
    worker = _json_lines((tmp_path / "worker.err").read_text())
    beat = _json_lines((tmp_path / "beat.err").read_text())
    assert any("ready" in str(line["message"]) for line in worker), worker
    succeeded = [line for line in worker if "succeeded" in str(line["message"])]
    assert succeeded and succeeded[0]["task_name"] == "approvals.tasks.expire_due_approvals", succeeded
    assert any("beat: Starting..." in str(line["message"]) for line in beat), beat
