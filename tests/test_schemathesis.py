"""Property-based API tests: every operation in /api/schema/, called on the live server with
generated input, never answers 5xx and answers only what the document says (status codes,
content types, bodies)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from policies.services import rule_set_version_create
from tests.factories import (
    BY_TESTS,
    ApprovalFactory,
    TeamFactory,
    ToolPolicyFactory,
    api_key_for,
    policy_draft_for,
    publish_rules,
    record_decision,
)
from webhooks.services import webhook_endpoint_create, webhook_test_send

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

RULES = "rules:\n  - {name: big_refunds, tool: refund, when: 'args.amount > 100', action: require_approval}\n"

MAX_EXAMPLES = 30
# An accepted event stream never ends, so a generated call would wait forever for its body: its
# refusals, cursors and events are tested in tests/test_event_stream_sdk.py and runtime/tests.
STREAMED = "/v1/events/stream"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _run_operation(operation, token: str) -> None:
    @given(case=operation.as_strategy())
    @settings(
        # Bounded and repeatable: all ~44 operations together take about a minute on 2 cores.
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        case.call_and_validate(headers={"X-Veto-API-Key": token}, checks=CHECKS)

    run()


def _seeded_team() -> tuple[str, dict[str, str]]:
    """A team with one of everything (so lists and reads answer real objects), its key holding
    every scope, and the path values that name its objects."""
    team = TeamFactory()
    publish_rules(team, RULES)
    rule_set_version_create(team=team, source_text=RULES.replace("> 100", "> 50"))
    ToolPolicyFactory(team=team, tool_name="refund")
    draft = policy_draft_for(team, [{"id": "cap", "name": "cap", "action": "block", "tools": ["refund"]}])
    approval = ApprovalFactory(team=team, tool_name="refund")
    decision = record_decision(team, tool_name="refund", approval_id=approval.id)
    webhook = webhook_endpoint_create(
        team=team, actor=BY_TESTS, values={"name": "SIEM", "url": "https://93.184.215.14/hook", "events": ["deny"]}
    ).endpoint
    delivery = webhook_test_send(endpoint=webhook, actor=BY_TESTS)
    values = {
        "approval_id": str(approval.id),
        "decision_id": str(decision.id),
        "draft_id": str(draft.id),
        "tool_name": "refund",
        "version": "1",
        "before": "1",
        "after": "2",
        "webhook_id": str(webhook.id),
        "delivery_id": str(delivery.id),
    }
    return api_key_for(team), values


def test_api__generated_requests__no_5xx_and_responses_match_the_schema(asgi_server):
    # Given a team with one of everything and a key holding every scope
    token, values = _seeded_team()
    schema = schemathesis.openapi.from_url(f"{asgi_server.url}/api/schema/")
    # When every read naming one of its objects is called, then every operation of the
    # document with generated input
    failures: dict[str, str] = {}
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures[f"(schema) {result.err()}"] = "the operation cannot be loaded"
            continue
        operation = result.ok()
        if operation.path == STREAMED:
            continue
        operations.append(operation)
    reads = 0
    for operation in operations:
        names = [p.name for p in operation.path_parameters]
        if operation.method.upper() != "GET" or not names:
            continue
        reads += 1
        case = operation.Case(path_parameters={name: values[name] for name in names})
        try:
            response = case.call_and_validate(headers={"X-Veto-API-Key": token}, checks=CHECKS)
            assert response.status_code == 200, response.text[:500]
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, as below
            failures[f"GET {operation.path} (the team's own object)"] = str(exc)[:3000]
    for operation in operations:
        try:
            _run_operation(operation, token)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected: one report names every failing operation
            failures[f"{operation.method.upper()} {operation.path}"] = str(exc)[:3000]
    # Then none answered 5xx, and every status, content type and body is the documented one
    assert len(operations) >= 40 and reads >= 6
    assert not failures, "\n\n".join(f"{name}:\n{message}" for name, message in failures.items())
