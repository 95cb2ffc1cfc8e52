"""The SDK's tool calls that are not on the hot path: register tools and list them.
(Validate is served by the runtime gateway: runtime/endpoints/validate.py; per-tool policies by
policies/api/policy_views.py.)"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from policies import selectors, services
from policies.api import serializers as s
from tenancy.principal import ApiKeyRequest


class ToolsRegisterView(APIView):
    @extend_schema(request=s.ToolsRegisterInputSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: ApiKeyRequest) -> Response:
        data = s.ToolsRegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tools = services.tools_register(team_id=request.auth.team_id, tools=data.validated_data["tools"])
        return Response(
            {
                "success": True,
                "registered_tools": [t.name for t in tools],
                "message": f"Registered {len(tools)} tool(s)",
            }
        )


class ToolsListView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: ApiKeyRequest) -> Response:
        tools = selectors.registered_tools_of_team(team_id=request.auth.team_id)
        return Response({"data": [s.tool_output(t) for t in tools]})
