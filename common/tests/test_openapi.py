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


def _schema() -> dict:
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


@pytest.mark.django_db
def test_schema__gateway_routes__path_parameters_and_sent_field_names_documented():
    # Given the OpenAPI document
    schema = _schema()
    # When the gateway's routes are read
    poll = schema["paths"]["/v1/approvals/{approval_id}"]["get"]
    created = schema["paths"]["/v1/decisions"]["post"]["responses"]["201"]["content"]["application/json"]
    created_schema = schema["components"]["schemas"][created["schema"]["$ref"].rsplit("/", 1)[-1]]
    # Then the poll's approval_id is a declared path parameter, and the decision log's answer
    # names "_id" as it is sent (not the Python attribute underscore_id)
    (approval_id,) = [p for p in poll["parameters"] if p["in"] == "path"]
    assert approval_id["name"] == "approval_id" and approval_id["required"] is True
    assert {"id", "_id"} <= set(created_schema["required"])
    assert "underscore_id" not in created_schema["properties"]


@pytest.mark.django_db
def test_schema__every_authenticated_operation__documents_its_error_answers():
    # Given the OpenAPI document
    schema = _schema()
    # When its authenticated operations are read
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if operation.get("security")
    ]
    # Then each documents 400 (two key headers), 401, 403, 429 and 503, as JSON errors; those
    # with a body also 413, and those naming an object in the path also 404
    assert len(operations) >= 40
    for path, method, operation in operations:
        responses = operation["responses"]
        expected = {"400", "401", "403", "429", "503"}
        if "requestBody" in operation:
            expected.add("413")
        if "{" in path:
            expected.add("404")
        assert expected <= set(responses), (method, path, sorted(responses))
        assert responses["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }


@pytest.mark.django_db
def test_schema__policy_export__yaml_documented_as_the_same_document_as_json():
    # Given the OpenAPI document
    schema = _schema()
    # When the policy export's answer is read
    content = schema["paths"]["/v1/policies/export"]["get"]["responses"]["200"]["content"]
    # Then YAML is the same object as JSON (a YAML reader gets a mapping, not a string)
    assert content["application/yaml"]["schema"] == content["application/json"]["schema"]
    assert content["application/yaml"]["schema"]["type"] == "object"
