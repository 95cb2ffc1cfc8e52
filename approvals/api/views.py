from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals import selectors
from approvals.api.serializers import approval_output
from common.api import parse_uuid_or_404


class ApprovalDetailView(APIView):
    """What the SDK polls while a human decides (``GET /v1/approvals/{id}``)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, approval_id: str) -> Response:
        approval = selectors.approval_get_for_team(
            team_id=request.auth.team_id, approval_id=parse_uuid_or_404(approval_id, what="approval")
        )
        return Response(approval_output(approval))
