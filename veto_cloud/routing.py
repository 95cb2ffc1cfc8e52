"""Routes outside Django's URLconf: the runtime gateway's hot endpoints and WebSockets."""

from approvals.api.runtime import approval_get
from audit.api.runtime import client_decision_create
from audit.api.schemas import ClientDecisionCreated, ClientDecisionRequest
from common.gateway import Route
from common.runtime import healthz
from policies.api.runtime import api_mode_validate, rule_set_active, tool_call_validate
from policies.api.schemas import (
    ApiModeValidateRequest,
    ApiModeValidateResponse,
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
    # UUID-shaped ids only: /v1/approvals/pending (and a malformed id's JSON 404) stay Django's.
    Route("GET", r"/v1/approvals/(?P<approval_id>[0-9a-fA-F-]{32,36})", approval_get),
]

# The live dashboards (a later issue) add their consumers here.
websocket_urlpatterns: list = []
