"""Central policy sync: versions uploaded, reviewed, tested, published, rolled back and pulled."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest

from audit.models import DecisionRecord
from conftest import start_asgi_server, stop_processes
from policies.models import RuleSetPublication, RuleSetVersion
from tests.factories import TeamFactory, api_key_for

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

V1 = """\
rules:
  - name: bucket_allowlist
    tool: run_data_export
    when: "!args.bucket.startsWith('internal-')"
    action: deny
    message: Exports restricted to internal-* buckets
fixtures:
  - suite: exports
    tests:
      - {id: public, tool: run_data_export, arguments: {bucket: s3://x}, expect: {decision: deny, rule_id: bucket_allowlist}}
      - {id: internal, tool: run_data_export, arguments: {bucket: internal-a}, expect: {decision: allow}}
"""
V2 = """\
rules:
  - name: bucket_allowlist
    tool: run_data_export
    when: "!args.bucket.startsWith('internal-')"
    action: require_approval
    approvers: [compliance]
  - name: no_sms_at_night
    tool: send_sms
    when: context.local_hour < 9
    action: deny
"""


class Api:
    """A sync job: ``key`` uploads, ``publisher_key`` (another key: four-eyes) publishes."""

    def __init__(self, base_url: str, key: str, publisher_key: str | None = None) -> None:
        self.client = httpx.Client(base_url=base_url, headers={"X-Veto-API-Key": key}, timeout=30)
        self.publisher = httpx.Client(
            base_url=base_url, headers={"X-Veto-API-Key": publisher_key or key}, timeout=30
        )

    def upload(self, source: str, content_type: str = "application/yaml") -> httpx.Response:
        return self.client.post("/v1/rule-sets", content=source, headers={"Content-Type": content_type})

    def publish(self, version: int) -> httpx.Response:
        return self.publisher.post(f"/v1/rule-sets/{version}/publish")

    def validate(self, tool: str, arguments: dict, context: dict | None = None) -> dict:
        body = {"tool_name": tool, "arguments": arguments, "context": context or {}}
        return self.client.post("/v1/tools/validate", json=body).json()


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def api(asgi_server, team) -> Api:
    return Api(asgi_server.url, api_key_for(team), api_key_for(team, name="release key"))


def test_upload__valid_yaml__stored_as_a_numbered_draft(api, team):
    response = api.upload(V1)
    assert response.status_code == 201
    body = response.json()
    assert (body["version"], body["status"], body["rules"], body["fixtures"]) == (1, "draft", 1, 2)
    stored = RuleSetVersion.objects.get(team=team, number=1)
    assert stored.source_text == V1  # exactly as uploaded
    assert stored.is_active is False


def test_upload__invalid__400_lists_every_problem_with_path_and_line_and_stores_nothing(api, team):
    response = api.upload("rules:\n  - name: a\n    action: nope\n    when: 'args.x =='\n")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {(e["path"], e["line"]) for e in errors} == {("rules[0].action", 3), ("rules[0].when", 4)}
    assert response.json()["error"]["code"] == "invalid_rule_set"
    assert not RuleSetVersion.objects.filter(team=team).exists()


def test_publish__fixtures_pass__becomes_the_one_active_version_and_decides(api, team):
    api.upload(V1)
    response = api.publish(1)
    assert response.status_code == 200
    assert response.json()["isActive"] is True
    assert api.validate("run_data_export", {"bucket": "s3://x"})["decision"] == "deny"
    assert RuleSetVersion.objects.filter(team=team, is_active=True).count() == 1


def test_publish__failing_fixtures__422_names_them_and_nothing_changes(api, team):
    api.upload(V1)
    api.publish(1)
    broken = V1.replace("action: deny", "action: allow")
    api.upload(broken)
    response = api.publish(2)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "fixtures_failed"
    failed = [r for r in error["details"]["results"] if not r["passed"]]
    assert [r["id"] for r in failed] == ["public"]
    assert failed[0]["error"] == "expected decision 'deny' but got 'allow'"
    assert RuleSetVersion.objects.get(team=team, is_active=True).number == 1


def test_publish__already_active__409(api):
    api.upload(V1)
    api.publish(1)
    assert api.publish(1).status_code == 409


def test_publish_then_rollback__history_says_so_and_validate_follows_within_a_second(api, team):
    api.upload(V1)
    api.publish(1)
    api.upload(V2)
    api.publish(2)
    started = time.monotonic()
    while api.validate("run_data_export", {"bucket": "s3://x"})["decision"] != "require_approval":
        assert time.monotonic() - started < 1.0, "validate still decides with the old version"
    api.publish(1)  # rollback
    started = time.monotonic()
    while api.validate("run_data_export", {"bucket": "s3://x"})["decision"] != "deny":
        assert time.monotonic() - started < 1.0, "validate still decides with the rolled-back version"
    history = api.client.get("/v1/rule-sets").json()
    assert [(p["kind"], p["version"], p["previousVersion"]) for p in history["publications"]] == [
        ("rollback", 1, 2),
        ("publish", 2, 1),
        ("publish", 1, None),
    ]
    assert [(v["version"], v["status"]) for v in history["data"]] == [(2, "archived"), (1, "published")]


def test_active__etag_304_and_formats(api):
    assert api.client.get("/v1/rule-sets/active").status_code == 404
    api.upload(V1)
    api.publish(1)
    yaml_response = api.client.get("/v1/rule-sets/active", headers={"Accept": "application/yaml"})
    assert yaml_response.status_code == 200
    assert yaml_response.text == V1
    assert yaml_response.headers["x-veto-rule-set-version"] == "1"
    etag = yaml_response.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = api.client.get(
        "/v1/rule-sets/active", headers={"Accept": "application/yaml", "If-None-Match": etag}
    )
    assert again.status_code == 304 and again.content == b""
    as_json = api.client.get(
        "/v1/rule-sets/active", headers={"Accept": "application/json", "If-None-Match": etag}
    )
    assert as_json.status_code == 200  # another representation, another tag
    assert json.loads(as_json.text)["rules"][0]["name"] == "bucket_allowlist"
    assert as_json.headers["etag"] != etag


def test_active__json_upload__served_as_uploaded_or_as_yaml(api):
    source = json.dumps({"rules": [{"name": "r", "tool": "t", "action": "deny"}]})
    assert api.upload(source, "application/json").status_code == 201
    api.publish(1)
    assert api.client.get("/v1/rule-sets/active").text == source
    as_yaml = api.client.get("/v1/rule-sets/active", headers={"Accept": "application/yaml"})
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert "name: r" in as_yaml.text


def test_active__long_poll__answers_as_soon_as_a_newer_version_is_published(api):
    api.upload(V1)
    api.publish(1)
    etag = api.client.get("/v1/rule-sets/active").headers["etag"]
    api.upload(V2)
    answer: dict[str, object] = {}

    def poll() -> None:
        response = api.client.get("/v1/rule-sets/active?wait=20", headers={"If-None-Match": etag})
        answer["response"], answer["at"] = response, time.monotonic()

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)  # the poll is waiting
    assert "response" not in answer
    published_at = time.monotonic()
    api.publish(2)
    poller.join(timeout=25)
    response = answer["response"]
    assert isinstance(response, httpx.Response) and response.status_code == 200
    assert response.headers["x-veto-rule-set-version"] == "2"
    handoff = float(answer["at"]) - published_at  # type: ignore[arg-type]
    assert handoff < 1.0, f"the long-poll answered {handoff:.2f} s after the publish"


def test_active__long_poll_times_out_with_304(api):
    api.upload(V1)
    api.publish(1)
    etag = api.client.get("/v1/rule-sets/active").headers["etag"]
    started = time.monotonic()
    response = api.client.get("/v1/rule-sets/active?wait=1", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert 0.9 < time.monotonic() - started < 5


@pytest.mark.parametrize("wait", ["61", "-1", "soon"])
def test_active__bad_wait__400(api, wait):
    response = api.client.get(f"/v1/rule-sets/active?wait={wait}")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("wait:")


def test_diff__rule_by_rule(api):
    api.upload(V1)
    api.upload(V2)
    diff = api.client.get("/v1/rule-sets/1/diff/2").json()
    assert [r["id"] for r in diff["added"]] == ["no_sms_at_night"]
    assert diff["removed"] == []
    changes = {c["field"]: (c["from"], c["to"]) for c in diff["changed"][0]["changes"]}
    assert changes["action"] == ("block", "require_approval")
    assert changes["approvers"] == (None, ["compliance"])


def test_preview__replays_recent_decisions_against_the_candidate(api):
    api.upload(V1)
    api.publish(1)
    for bucket in ("s3://a", "s3://b", "internal-c"):
        api.validate("run_data_export", {"bucket": bucket})
    api.validate("send_sms", {"to": "+1"}, {"local_hour": 3})
    api.upload(V2)
    preview = api.client.post("/v1/rule-sets/2/preview").json()
    assert preview["replayed"] == 4
    changes = {(c["from"], c["to"]): c for c in preview["changes"]}
    assert changes[("deny", "require_approval")]["count"] == 2
    assert changes[("allow", "deny")]["count"] == 1
    example = changes[("allow", "deny")]["examples"][0]
    assert (example["toolName"], example["wouldBe"]["ruleId"]) == ("send_sms", "no_sms_at_night")


def test_scopes__runtime_key_cannot_upload_or_publish(asgi_server, team):
    limited = Api(asgi_server.url, api_key_for(team, scopes=("runtime", "policies:write")))
    assert limited.upload(V1).status_code == 201
    response = limited.publish(1)
    assert response.status_code == 403
    assert "policies:publish" in response.json()["error"]["message"]
    runtime_only = Api(asgi_server.url, api_key_for(team, scopes=("runtime",)))
    assert runtime_only.upload(V1).status_code == 403
    assert not RuleSetPublication.objects.exists()


def test_versions__another_teams_version__404(api, asgi_server):
    api.upload(V1)
    stranger = Api(asgi_server.url, api_key_for(TeamFactory()))
    assert stranger.client.get("/v1/rule-sets/1").status_code == 404
    assert stranger.publish(1).status_code == 404


def test_api_mode_validate__inline_rules_or_the_active_set(api):
    inline = {
        "context": {
            "call_id": "c1",
            "tool_name": "transfer",
            "arguments": {"amount": 5000},
            "session_id": "s",
        },
        "rules": [
            {
                "id": "big",
                "name": "Big transfers",
                "action": "require_approval",
                "severity": "high",
                "tools": ["transfer"],
                "conditions": [{"field": "arguments.amount", "operator": "greater_than", "value": 1000}],
            }
        ],
    }
    answer = api.client.post("/v1/validate", json=inline).json()
    assert (answer["decision"], answer["rule_id"], answer["severity"]) == ("require_approval", "big", "high")
    assert answer["approval_id"]
    api.upload(V1)
    api.publish(1)
    from_active = api.client.post(
        "/v1/validate", json={"context": {"tool_name": "run_data_export", "arguments": {"bucket": "s3://x"}}}
    ).json()
    assert (from_active["decision"], from_active["rule_id"]) == ("deny", "bucket_allowlist")
    assert DecisionRecord.objects.count() == 2


def test_api_mode_validate__bad_inline_rules__400_with_paths(api):
    body = {"context": {"tool_name": "t"}, "rules": [{"id": "x", "name": "x", "action": "explode"}]}
    response = api.client.post("/v1/validate", json=body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "rules[0].action"


@pytest.mark.parametrize(
    ("rules", "limit"),
    [
        ([{"id": f"r{i}", "action": "block", "tools": ["t"]} for i in range(101)], "max_rules"),
        (
            [{"id": f"r{i}", "action": "block", "when": "args.amount > 100000000"} for i in range(200)],
            "max_rules",
        ),
        (
            [
                {"id": f"r{i}", "action": "block", "when": " && ".join(["args.amount > 1"] * 20)}
                for i in range(20)
            ],
            "max_expression_chars",
        ),
    ],
)
def test_api_mode_validate__inline_rules_over_their_limits__422_naming_the_limit(api, rules, limit):
    # Given inline rules over their limits (they compile while the call waits: at most 100
    # rules, 4,000 characters of when:), when they are sent,
    response = api.client.post("/v1/validate", json={"context": {"tool_name": "t"}, "rules": rules})
    # then a 422 names the limit, and nothing was decided.
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "rule_set_too_large"
    assert response.json()["error"]["details"]["limit"] == limit
    assert not DecisionRecord.objects.exists()


@pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="needs REDIS_URL: the embedded in-memory channel layer is one process by design; "
    ".ci/run runs this against Redis and fails on any skip there",
)
def test_publish__reaches_another_worker_process_within_a_second(team, tmp_path):
    # Given two server processes that would otherwise trust their compiled copy for a minute
    slow_recheck = {"VETO_RULE_SET_RECHECK_SECONDS": "60"}
    first, server_a = start_asgi_server(tmp_path / "a.log", **slow_recheck)
    second, server_b = start_asgi_server(tmp_path / "b.log", **slow_recheck)
    try:
        key, publisher = api_key_for(team), api_key_for(team, name="release key")
        a, b = Api(server_a.url, key, publisher), Api(server_b.url, key, publisher)
        a.upload(V1)
        a.publish(1)
        time.sleep(0.3)
        assert b.validate("run_data_export", {"bucket": "s3://x"})["decision"] == "deny"  # b has v1 cached
        # When a publishes v2
        a.upload(V2)
        a.publish(2)
        published_at = time.monotonic()
        # Then b decides with v2 within a second: the publish event dropped its copy
        while b.validate("run_data_export", {"bucket": "s3://x"})["decision"] != "require_approval":
            assert time.monotonic() - published_at < 1.0, "the other process still decides with v1"
    finally:
        stop_processes(first, second)
