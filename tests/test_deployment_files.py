"""docker-compose.yml cannot be run here (no Docker engine), so it is checked: against the
compose-spec JSON schema (vendored from the compose-spec project, Apache-2.0), and for what the
product needs from it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose__is_valid_against_the_compose_spec():
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.schema.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(compose())


def test_compose__postgres_redis_web_worker_beat_all_with_health_checks():
    services = compose()["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)
    for name in ("postgres", "redis", "web", "worker", "beat"):
        assert "healthcheck" in services[name], name


def test_compose__app_services_share_one_image_and_wait_for_migrations():
    services = compose()["services"]
    app = ["migrate", "web", "worker", "beat"]
    assert {services[name]["build"] for name in app} == {"."}
    assert {services[name]["image"] for name in app} == {"veto-cloud:local"}
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert environment["REDIS_URL"].startswith("redis://")
        assert environment["DEBUG"] == "false"


def test_dockerfile__serves_with_the_same_launcher_as_make_run():
    dockerfile = (ROOT / "Dockerfile").read_text()
    procfile = (ROOT / "Procfile").read_text()
    assert 'CMD ["python", "-m", "veto_cloud.serve"]' in dockerfile
    assert "web: python -m veto_cloud.serve" in procfile
    assert compose()["services"]["web"]["command"] == ["python", "-m", "veto_cloud.serve"]


def rendered_compose() -> dict:
    """docker-compose.yml as Docker Compose itself resolves it (anchors, merges, variables):
    `docker-compose config` needs no engine. Missing is a failure: .ci/run installs it."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is missing: `apt-get install -y docker-compose` (.ci/run does this when it is "
            "missing); it renders docker-compose.yml without a Docker engine"
        )
    result = subprocess.run(
        [binary, "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "SECRET_KEY": "compose-config-test"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _mounts(service: dict) -> dict[str, str]:
    """target path -> source, for a service's volumes in short ("src:dst[:mode]") or long syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        mounts[target] = source
    return mounts


def test_compose__docker_compose_renders_it_without_an_engine():
    # Given the compose file, When Docker Compose resolves it, Then every service survives
    services = rendered_compose()["services"]
    assert {"postgres", "redis", "migrate", "web", "worker", "beat"} <= set(services)


def test_compose__web_worker_beat__share_one_audit_signing_key():
    # Given the compose file as Docker Compose resolves it
    rendered = rendered_compose()
    services = rendered["services"]
    homes = set()
    for name in ("migrate", "web", "worker", "beat"):
        # When each app container's signing-key path is followed to where it is stored
        key_file = PurePosixPath(services[name]["environment"]["VETO_AUDIT_SIGNING_KEY_FILE"])
        mounts = _mounts(services[name])
        directory = next((target for target in mounts if key_file.is_relative_to(target)), None)
        assert directory is not None, (
            f"{name}: {key_file} is not on a mounted volume (each container would make its own)"
        )
        homes.add((str(key_file), mounts[directory]))
    # Then all four name the same file on the same named volume, declared once
    assert len(homes) == 1, homes
    ((_, volume),) = homes
    assert volume in rendered["volumes"], f"{volume} is not a named volume"
    # and the image creates the mount point for its unprivileged user (a new volume copies it)
    dockerfile = (ROOT / "Dockerfile").read_text()
    mount_point = str(PurePosixPath(next(iter(homes))[0]).parent)
    assert (
        f"mkdir -p /app/var {mount_point}" in dockerfile
        and f"chown -R veto:veto /app/var {mount_point}" in dockerfile
    )


def test_compose__migrate__makes_the_signing_key_before_the_others_start():
    # Given the resolved compose file
    services = rendered_compose()["services"]
    # When migrate runs (web, worker and beat wait for it to complete)
    command = " ".join(services["migrate"]["command"])
    # Then it migrates and creates the key once, so no two containers race to create their own
    assert "migrate --noinput" in command and "signing_public_key_hex" in command
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose__haproxy_in_front__web_publishes_no_port_so_it_can_be_scaled():
    # Given the compose file as Docker Compose resolves it
    services = rendered_compose()["services"]
    # When its entry point and the web nodes are looked at
    haproxy, web = services["haproxy"], services["web"]
    # Then clients reach HAProxy on 8000, and web has no host port (`--scale web=3` would clash)
    assert [
        str(p.get("published")) if isinstance(p, dict) else p.split(":")[0] for p in haproxy["ports"]
    ] == ["8000"]
    assert not web.get("ports"), web.get("ports")
    # ... HAProxy runs the repository's configuration, which balances over every `web` replica on
    # the port web listens on, and web believes the client address HAProxy forwards
    mounts = _mounts(haproxy)
    assert (
        Path(mounts["/usr/local/etc/haproxy/haproxy.cfg"]).resolve()
        == ROOT / "deploy" / "haproxy" / "haproxy.cfg"
    )
    config = (ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text()
    assert f"web:{web['environment']['PORT']} check resolvers docker" in config
    assert "http-request del-header X-Forwarded-For" in config and "option forwardfor" in config
    assert web["environment"]["FORWARDED_ALLOW_IPS"] == "*"


def test_haproxy_config__haproxy_accepts_it():
    # Given deploy/haproxy/haproxy.cfg (the one compose, the multi-node benchmark and its test run)
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if binary is None:
        pytest.fail("haproxy is missing: `apt-get install -y haproxy` (Debian's package) checks this file")
    # When HAProxy checks it, Then it is valid
    result = subprocess.run(
        [binary, "-c", "-f", str(ROOT / "deploy" / "haproxy" / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose__metrics_token__from_the_shell_to_web_and_off_when_unset():
    # Given the compose file, raw and as Docker Compose resolves it without the variable
    raw = compose()["services"]["web"]["environment"]
    rendered = rendered_compose()["services"]["web"]["environment"]
    # Then web takes VETO_METRICS_TOKEN from the shell, and without it /metrics stays off
    assert raw["VETO_METRICS_TOKEN"] == "${VETO_METRICS_TOKEN:-}"
    assert rendered["VETO_METRICS_TOKEN"] == ""
