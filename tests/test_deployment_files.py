"""docker-compose.yml cannot be run here (no Docker engine), so it is checked: against the
compose-spec JSON schema (vendored from the compose-spec project, Apache-2.0), and for what the
product needs from it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
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
