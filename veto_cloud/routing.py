"""Routes outside Django's URLconf: the runtime gateway's hot endpoints and WebSockets."""

from audit.api.runtime import client_decision_create
from common.gateway import Route
from common.runtime import healthz
from policies.api.runtime import tool_call_validate

runtime_routes = [
    Route("GET", "/healthz", healthz),
    Route("POST", "/v1/tools/validate", tool_call_validate),
    Route("POST", "/v1/decisions", client_decision_create),
]

# The live dashboards (a later issue) add their consumers here.
websocket_urlpatterns: list = []
