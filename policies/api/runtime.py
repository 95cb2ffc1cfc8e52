"""Gateway endpoints for the SDK's hot path (see common/gateway.py for why they bypass Django's stack)."""

from __future__ import annotations

import time

from common.gateway import GatewayRequest, GatewayResponse
from policies import services
from policies.api.schemas import ToolCallValidateRequest, ToolCallValidateResponse
from tenancy.authentication import authenticate_gateway_request
from tenancy.models import ApiKey


async def tool_call_validate(request: GatewayRequest) -> GatewayResponse:
    """Decide one tool call: allow, deny or require_approval (with the approval to poll)."""
    started = time.perf_counter()
    principal = await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
    data = request.parse(ToolCallValidateRequest)
    outcome = await services.tool_call_validate(
        principal=principal,
        tool_name=data.tool_name,
        arguments=data.arguments,
        context=data.context or {},
        started=started,
    )
    return GatewayResponse(200, ToolCallValidateResponse.from_outcome(outcome))
