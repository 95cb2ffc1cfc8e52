"""Bad input to the per-tool policy, policy-draft and rule-set upload API: always a 4xx JSON
error that says what and where, never a 5xx, and nothing half-written."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, example, given, settings
from rest_framework.test import APIClient

from policies.models import PolicyDraft, RuleSetVersion, ToolPolicy
from tests.factories import TeamFactory, ToolPolicyFactory, api_key_for, policy_draft_for
from tests.yaml_text import ISSUE_10_INPUTS, yamlish_text

pytestmark = pytest.mark.django_db

RULE = {"id": "r", "name": "r", "action": "block", "tools": ["t"]}


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def api(team) -> APIClient:
    return APIClient(HTTP_X_VETO_API_KEY=api_key_for(team))


def send(api: APIClient, method: str, path: str, body: object | None = None):
    content = body if isinstance(body, str) else (json.dumps(body) if body is not None else "")
    return getattr(api, method)(path, data=content, content_type="application/json")


def assert_error(response, status: int, code: str, where: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]["code"] == code
    assert where in body["error"]["message"]
    return body


POLICY = {"toolName": "transfer", "mode": "deterministic"}


@pytest.mark.parametrize(
    ("body", "code", "where"),
    [
        ('{"toolName": "t", ', "malformed_json", "request body is not valid JSON: Expecting"),
        ("[" * 50_000 + "]" * 50_000, "malformed_json", "nested too deeply"),
        (
            '{"toolName": "t", "mode": "deterministic", "constraints": [{"argumentName": "a", "maximum": NaN}]}',
            "malformed_json",
            "NaN",
        ),
        ('{"toolName": "bad\\u0000", "mode": "deterministic"}', "invalid_request", "NUL character"),
        (["transfer"], "invalid_policy", "a policy must be a JSON object"),
        ({"mode": "deterministic"}, "invalid_policy", "toolName"),
        (
            # json.loads reads 1e400 as infinity, which no comparison can use
            '{"toolName": "t", "mode": "deterministic", "constraints": [{"argumentName": "a", "maximum": 1e400}]}',
            "invalid_policy",
            "constraints[0].maximum",
        ),
        (
            {**POLICY, "constraints": [{"argumentName": "a"}, {"argumentName": "b", "regex": "(?<=x)y"}]},
            "invalid_policy",
            "constraints[1].regex",
        ),
        (
            {**POLICY, "constraints": [{"argumentName": "a", "enum": [1]}]},
            "invalid_policy",
            "constraints[0].enum",
        ),
        (
            {**POLICY, "mode": "llm", "llmConfig": {"description": "d", "exceptions": []}},
            "invalid_policy",
            "llmConfig.exceptions",
        ),
        ({**POLICY, "sessionConstraints": {"budget": 10}}, "invalid_policy", "sessionConstraints.budget"),
        ({**POLICY, "toolName": "x" * 500}, "invalid_policy", "toolName"),
    ],
)
def test_policy_create__bad_body__400_naming_where_and_nothing_stored(api, body, code, where):
    assert_error(send(api, "post", "/v1/policies", body), 400, code, where)
    assert not ToolPolicy.objects.exists()


def test_policy_create__every_problem_listed_with_its_path(api):
    body = {"toolName": "", "mode": "fuzzy", "constraints": [{"argumentName": "a", "minLength": -1}, 7]}
    response = send(api, "post", "/v1/policies", body)
    assert response.status_code == 400
    assert [e["path"] for e in response.json()["errors"]] == [
        "toolName",
        "mode",
        "constraints[0].minLength",
        "constraints[1]",
    ]


@pytest.mark.parametrize("project_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_policy_create__someone_elses_or_junk_project__404(api, project_id):
    assert_error(
        send(api, "post", "/v1/policies", {**POLICY, "projectId": project_id}), 404, "not_found", "project"
    )
    assert not ToolPolicy.objects.exists()


def test_policy_create__duplicate__409_policy_exists(api, team):
    ToolPolicyFactory(team=team, tool_name="transfer")
    assert_error(send(api, "post", "/v1/policies", POLICY), 409, "policy_exists", "already exists")
    assert ToolPolicy.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"toolName": "other", "mode": "deterministic"}, "toolName"),
        ({"mode": "deterministic", "constraints": {"argumentName": "a"}}, "constraints"),
        (
            {"mode": "deterministic", "constraints": [{"argumentName": "a", "minimum": 3, "maximum": 1}]},
            "constraints[0].minimum",
        ),
        (
            {"mode": "deterministic", "outputRules": [{"id": "o", "name": "o", "action": "redact"}]},
            "outputRules",
        ),
        ("5", "a policy must be a JSON object"),
    ],
)
def test_policy_update__bad_body__400_and_the_policy_unchanged(api, team, body, where):
    policy = ToolPolicyFactory(team=team, tool_name="transfer")
    assert_error(send(api, "put", "/v1/policies/transfer", body), 400, "invalid_policy", where)
    policy.refresh_from_db()
    assert (policy.version, policy.constraints) == (
        1,
        [{"argumentName": "amount", "enabled": True, "maximum": 1000}],
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/policies/missing"),
        ("put", "/v1/policies/missing"),
        ("delete", "/v1/policies/missing"),
        ("post", "/v1/policies/missing/activate"),
        ("post", "/v1/policies/missing/deactivate"),
    ],
)
def test_policy__unknown_tool__404_json(api, method, path):
    body = {"mode": "deterministic"} if method == "put" else None
    assert_error(send(api, method, path, body), 404, "not_found", "no policy for tool 'missing'")


@pytest.mark.parametrize(
    ("query", "where"),
    [("isActive=maybe", "isActive"), ("mode=fuzzy", "mode"), ("toolName=" + "x" * 300, "toolName")],
)
def test_policy_list__bad_filter__400_naming_it(api, query, where):
    assert_error(api.get(f"/v1/policies?{query}"), 400, "invalid_request", where)


def test_policy_export__unknown_format__400(api):
    assert_error(api.get("/v1/policies/export?format=xml"), 400, "invalid_request", "format")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"name": "x"}, "rules"),
        ({"name": "x", "rules": []}, "rules"),
        ({"name": "x", "rules": "block everything"}, "rules"),
        ({"rules": [RULE]}, "name"),
        ({"name": "x" * 201, "rules": [RULE]}, "name"),
        ({"name": "x", "rules": [RULE], "status": "approved"}, "status"),
        ({"name": "x", "rules": [RULE], "createdByAgentId": ["a"]}, "createdByAgentId"),
        ('{"name": "x", "rules": [', "request body is not valid JSON: Expecting"),
    ],
)
def test_draft_create__bad_body__400_naming_where_and_nothing_stored(api, body, where):
    response = send(api, "post", "/v1/policy-drafts", body)
    assert response.status_code == 400, response.content
    assert where in response.json()["error"]["message"]
    assert not PolicyDraft.objects.exists()


def test_draft_create__rules_the_loader_refuses__400_with_paths(api):
    rules = [RULE, {"id": "r", "name": "again", "action": "block", "when": "args.x =="}]
    body = assert_error(
        send(api, "post", "/v1/policy-drafts", {"name": "x", "rules": rules}),
        400,
        "invalid_rule_set",
        "rules[1]",
    )
    assert {e["path"] for e in body["errors"]} == {"rules[1].id", "rules[1].when"}
    assert not PolicyDraft.objects.exists()


def test_draft_create__another_project__404(api):
    body = {"name": "x", "rules": [RULE], "projectId": str(uuid.uuid4())}
    assert_error(send(api, "post", "/v1/policy-drafts", body), 404, "not_found", "project")


@pytest.mark.parametrize(
    ("body", "where"), [({"reason": ["no"]}, "reason"), ({"reason": "x" * 5001}, "reason")]
)
def test_draft_reject__bad_reason__400_and_the_draft_stays_open(api, team, body, where):
    draft = policy_draft_for(team, [RULE])
    assert_error(
        send(api, "post", f"/v1/policy-drafts/{draft.id}/reject", body), 400, "invalid_request", where
    )
    draft.refresh_from_db()
    assert draft.status == PolicyDraft.Status.DRAFT


@pytest.mark.parametrize("draft_id", [str(uuid.uuid4()), "nope"])
@pytest.mark.parametrize("action", ["", "/approve", "/reject"])
def test_draft__unknown_id__404_json(api, draft_id, action):
    method = "get" if action == "" else "post"
    assert_error(send(api, method, f"/v1/policy-drafts/{draft_id}{action}"), 404, "not_found", "policy draft")


@pytest.mark.parametrize(("query", "where"), [("status=done", "status"), ("projectId=junk", "projectId")])
def test_draft_list__bad_filter__400_naming_it(api, query, where):
    assert_error(api.get(f"/v1/policy-drafts?{query}"), 400, "invalid_request", where)


@pytest.mark.parametrize(
    ("content_type", "where"),
    [("application/yaml", "a rule set must be a mapping"), ("application/json", "invalid JSON")],
)
def test_rule_set_upload__empty_body__400_and_nothing_stored(api, content_type, where):
    # Given an upload with no body (DRF runs no parser then), when it is posted,
    response = api.post("/v1/rule-sets", data="", content_type=content_type)
    # then it is refused as an invalid rule set, not a 500.
    assert_error(response, 400, "invalid_rule_set", where)
    assert not RuleSetVersion.objects.exists()


def test_policies__no_key__401_json():
    response = APIClient().get("/v1/policies")
    assert_error(response, 401, "unauthenticated", "X-Veto-API-Key")


# --- rule-set sources: every failure to load is a located 4xx (issue 10, findings 3 and 11) --------


def upload(api: APIClient, source: str, content_type: str = "application/yaml"):
    return api.post("/v1/rule-sets", data=source.encode("utf-8"), content_type=content_type)


def assert_located(response) -> list[dict]:
    """A 4xx JSON error whose every problem names a line."""
    assert 400 <= response.status_code < 500, response.content
    body = response.json()
    assert body["error"]["code"] in ("invalid_rule_set", "rule_set_too_large"), body
    errors = body["errors"]
    assert errors and all(isinstance(e["line"], int) and e["line"] >= 1 for e in errors), errors
    return errors


@given(source=yamlish_text)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(source="x: 2020-02-30")
@example(source="rules: []\nx: !!int 'abc'\n")
@pytest.mark.parametrize("content_type", ["application/yaml", "application/json"])
def test_rule_set_upload__any_yamlish_text__never_5xx_and_a_refusal_names_a_line(api, source, content_type):
    # Given any YAML-ish text (tokens, tags, indentation, brackets, anchors, quotes, unicode,
    # long numbers), when it is uploaded as YAML or as JSON,
    response = upload(api, source, content_type)
    # then it is stored, or refused with a JSON error that names a line, never a 5xx.
    if response.status_code == 201:
        return
    if response.status_code == 400 and response.json()["error"]["code"] == "invalid_request":
        assert "\x00" in source  # the parser's NUL refusal, before any YAML
        return
    assert_located(response)


@pytest.mark.parametrize("source", ISSUE_10_INPUTS)
def test_rule_set_upload__values_pyyaml_cannot_build__400_at_their_line_and_nothing_stored(api, source):
    # Given the documents issue 10 listed (a 500 each), when uploaded, then a located 400.
    response = upload(api, source)
    assert response.status_code == 400
    assert_located(response)
    assert not RuleSetVersion.objects.exists()


def test_rule_set_upload__unclosed_bracket__400_at_the_line_it_opens(api):
    # Given a "[" left open on line 3 that the parser only notices on line 4,
    response = upload(api, "rules:\n  - name: r\n    tools: [a, b\n    action: deny\n")
    # then the problem points at line 3 and says where it was noticed.
    (error,) = assert_located(response)
    assert (error["line"], error["noticed_line"]) == (3, 4)


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ('{"rules": [],\n "x": ' + "1" * 4400 + "}", "4400 digits"),
        ('{"rules": [],\n "x": 1e400}', "too large a number"),
        ('{"rules": [],\n "x": NaN}', "NaN"),
    ],
)
def test_rule_set_upload__json_python_cannot_read__400_at_its_line(api, source, where):
    (error,) = assert_located(upload(api, source, "application/json"))
    assert error["line"] == 2 and where in error["message"]
    assert not RuleSetVersion.objects.exists()


@override_settings(RULE_SET_MAX_BYTES=1024)
def test_rule_set_upload__over_the_byte_limit__413_naming_the_limit(api):
    # Given a limit of 1024 bytes, when a larger document is uploaded,
    response = upload(api, "rules: []\n# " + "x" * 1100)
    # then it is a 413 that names the limit, its value and its setting; nothing is stored.
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "rule_set_too_large"
    assert error["details"]["limit"] == "max_bytes" and error["details"]["maximum"] == 1024
    assert error["details"]["setting"] == "VETO_RULE_SET_MAX_BYTES"
    assert "max_bytes = 1024" in error["message"]
    assert not RuleSetVersion.objects.exists()


@override_settings(RULE_SET_MAX_RULES=2, RULE_SET_MAX_DEPTH=4, RULE_SET_MAX_STRING_LENGTH=300)
@pytest.mark.parametrize(
    ("source", "limit", "actual"),
    [
        ("rules:\n" + "  - {name: r, action: deny}\n" * 3, "max_rules", 3),
        ("rules: []\nmetadata: {a: [[[1]]]}\n", "max_depth", None),
        ("rules: []\nx: " + "y" * 301 + "\n", "max_string_length", 301),
    ],
)
def test_rule_set_upload__over_another_limit__422_rule_set_too_large(api, source, limit, actual):
    response = upload(api, source)
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["details"]["limit"], error["details"]["actual"]) == (
        "rule_set_too_large",
        limit,
        actual,
    )
    assert_located(response)
    assert not RuleSetVersion.objects.exists()


@override_settings(RULE_SET_MAX_RULES=2)
def test_draft_create__more_rules_than_the_limit__422_and_nothing_stored(api):
    rules = [{**RULE, "id": f"r{i}", "name": f"r{i}"} for i in range(3)]
    response = send(api, "post", "/v1/policy-drafts", {"name": "x", "rules": rules})
    assert response.status_code == 422, response.content
    assert response.json()["error"]["details"]["limit"] == "max_rules"
    assert not PolicyDraft.objects.exists()
