"""The OpenAPI document covers the Django API and the gateway routes, and validates."""

import io

import pytest
import yaml
from django.core.management import call_command


@pytest.mark.django_db
def test_schema__validates_and_documents_every_runtime_route():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    paths = schema["paths"]
    validate = paths["/v1/tools/validate"]["post"]
    assert validate["security"] == [{"ApiKey": []}]
    request_schema = validate["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[
        -1
    ]
    assert schema["components"]["schemas"][request_schema]["required"] == ["tool_name"]
    assert {"/healthz", "/v1/decisions", "/v1/tools/register", "/v1/api-keys", "/v1/projects"} <= set(paths)
    assert set(paths["/v1/decisions"]) == {"get", "post"}
    assert schema["components"]["securitySchemes"]["ApiKey"]["name"] == "X-Veto-API-Key"
