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

from tests.factories import TeamFactory, api_key_for, publish_rules

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

RULES = "rules:\n  - {name: big_refunds, tool: refund, when: 'args.amount > 100', action: require_approval}\n"

MAX_EXAMPLES = 30
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


def test_api__generated_requests__no_5xx_and_responses_match_the_schema(asgi_server):
    # Given a team with a published rule set and a key holding every scope
    team = TeamFactory()
    publish_rules(team, RULES)
    token = api_key_for(team)
    schema = schemathesis.openapi.from_url(f"{asgi_server.url}/api/schema/")
    # When every operation of the document is called with generated input and the team's key
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures[f"(schema) {result.err()}"] = "the operation cannot be loaded"
            continue
        operation = result.ok()
        operations += 1
        try:
            _run_operation(operation, token)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected: one report names every failing operation
            failures[f"{operation.method.upper()} {operation.path}"] = str(exc)[:3000]
    # Then none answered 5xx, and every status, content type and body is the documented one
    assert operations >= 40
    assert not failures, "\n\n".join(f"{name}:\n{message}" for name, message in failures.items())
