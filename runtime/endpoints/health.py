"""Gateway endpoint for the liveness probe."""

from runtime.gateway import GatewayRequest, GatewayResponse, json_response


async def healthz(request: GatewayRequest) -> GatewayResponse:
    """``GET /healthz``: the process answers. Also the ceiling the validate benchmark compares against."""
    return json_response({"status": "ok"})
