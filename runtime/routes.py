"""The gateway's routes: the SDK's hot endpoints, served outside Django's URLconf (runtime/gateway.py)."""

from runtime.endpoints.approvals import approval_get
from runtime.endpoints.decisions import client_decision_create
from runtime.endpoints.events import event_stream
from runtime.endpoints.health import healthz
from runtime.endpoints.rule_sets import rule_set_active
from runtime.endpoints.validate import api_mode_validate, tool_call_validate
from runtime.gateway import Route
from runtime.schemas import (
    ApiModeValidateRequest,
    ApiModeValidateResponse,
    ClientDecisionCreated,
    ClientDecisionRequest,
    ToolCallValidateRequest,
    ToolCallValidateResponse,
)

runtime_routes = [
    Route("GET", "/healthz", healthz, authenticated=False),
    Route(
        "POST",
        "/v1/tools/validate",
        tool_call_validate,
        request_model=ToolCallValidateRequest,
        response_model=ToolCallValidateResponse,
    ),
    Route(
        "POST",
        "/v1/decisions",
        client_decision_create,
        request_model=ClientDecisionRequest,
        response_model=ClientDecisionCreated,
        status=201,
    ),
    Route(
        "POST",
        "/v1/validate",
        api_mode_validate,
        request_model=ApiModeValidateRequest,
        response_model=ApiModeValidateResponse,
    ),
    Route("GET", "/v1/rule-sets/active", rule_set_active),
    # Server-Sent Events: held open, so served here, off Django's threads.
    Route("GET", "/v1/events/stream", event_stream),
    # UUID-shaped ids only: /v1/approvals/pending (and a malformed id's JSON 404) stay Django's.
    Route("GET", r"/v1/approvals/(?P<approval_id>[0-9a-fA-F-]{32,36})", approval_get),
]
