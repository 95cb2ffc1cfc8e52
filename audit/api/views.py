"""Decisions: the SDK logs its local ones; admins list, count and read them."""

from __future__ import annotations

from collections.abc import Iterable

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import selectors
from audit.api import serializers as s
from audit.export import decisions_export
from common.api import parse_uuid_or_404
from common.errors import NotFound
from tenancy.models import ApiKey
from tenancy.principal import ApiKeyRequest

READ = (ApiKey.Scope.DECISIONS_READ,)


def _validated_query(
    request: ApiKeyRequest, serializer: type[s.DecisionQuerySerializer] = s.DecisionQuerySerializer
) -> s.DecisionQuerySerializer:
    query = serializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    project_id = query.validated_data.get("projectId")
    if project_id is not None and project_id != request.auth.team_id:
        raise NotFound("project not found")
    return query


class DecisionsView(APIView):
    """``GET /v1/decisions``. (``POST`` is served by the runtime gateway: runtime/endpoints/decisions.py.)"""

    required_scopes = READ

    @extend_schema(
        operation_id="v1_decisions_list",
        parameters=[s.DecisionQuerySerializer],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: ApiKeyRequest) -> Response:
        query = _validated_query(request)
        records = selectors.decisions_of_team(team_id=request.auth.team_id, filters=query.filters())
        limit, offset = query.validated_data["limit"], query.validated_data["offset"]
        total = records.count()
        page = list(records[offset : offset + limit])
        return Response(
            {
                "data": [s.decision_output(r) for r in page],
                "pagination": {
                    "total": total,
                    "limit": limit,
                    "offset": offset,
                    "hasMore": offset + len(page) < total,
                },
            }
        )


class DecisionStatsView(APIView):
    required_scopes = READ

    @extend_schema(parameters=[s.DecisionQuerySerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: ApiKeyRequest) -> Response:
        query = _validated_query(request)
        return Response(selectors.decision_stats(team_id=request.auth.team_id, filters=query.filters()))


class _FormatIsAQueryParameter(DefaultContentNegotiation):
    """Here ``?format=`` names the export's file format, not a DRF renderer: errors stay JSON."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class DecisionExportView(APIView):
    """``GET /v1/decisions/export``: the team's chain entries, streamed (audit/export.py)."""

    required_scopes = READ
    content_negotiation_class = _FormatIsAQueryParameter

    @extend_schema(
        operation_id="v1_decisions_export",
        parameters=[s.DecisionExportQuerySerializer],
        responses={(200, "application/json"): OpenApiTypes.OBJECT, (200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request: ApiKeyRequest) -> StreamingHttpResponse:
        query = _validated_query(request, s.DecisionExportQuerySerializer)
        file_format = query.validated_data["format"]
        stream, content_type = decisions_export(
            team_id=request.auth.team_id, filters=query.filters(), format=file_format
        )
        response = StreamingHttpResponse(stream, content_type=content_type)
        response["Content-Disposition"] = (
            f'attachment; filename="decisions-{request.auth.team_id}.{file_format}"'
        )
        return response


class DecisionDetailView(APIView):
    required_scopes = READ

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: ApiKeyRequest, decision_id: str) -> Response:
        record = selectors.decision_get_for_team(
            team_id=request.auth.team_id, decision_id=parse_uuid_or_404(decision_id, what="decision")
        )
        return Response(s.decision_output(record))
