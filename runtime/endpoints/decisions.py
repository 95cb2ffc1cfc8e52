"""Gateway endpoint: the SDK logs the decisions it made locally (fire-and-forget on its side)."""

from __future__ import annotations

from django.utils import timezone

from runtime import decisions
from runtime.authentication import authenticate_gateway_request
from runtime.gateway import GatewayRequest, GatewayResponse
from runtime.schemas import ClientDecisionCreated, ClientDecisionRequest
from tenancy.models import ApiKey


async def client_decision_create(request: GatewayRequest) -> GatewayResponse:
    """Record a decision the SDK made locally, like any other decision."""
    principal = await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
    data = request.parse(ClientDecisionRequest)
    decision_id = await decisions.client_decision_record(
        principal=principal,
        tool_name=data.tool_name,
        arguments=data.arguments,
        context=data.context or {},
        decision=data.decision,
        reason=data.reason or "",
        mode=data.mode,
        latency_ms=data.latency_ms,
        now=timezone.now(),
    )
    return GatewayResponse(201, ClientDecisionCreated(id=str(decision_id), underscore_id=str(decision_id)))
