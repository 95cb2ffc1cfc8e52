"""The rule-set sync API: upload, history, diff, impact preview, publish and roll back.

(``GET /v1/rule-sets/active``, polled and long-polled by sync jobs, is a gateway endpoint:
runtime/endpoints/rule_sets.py.)
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from common.edge import SOURCE_MEDIA_TYPES, source_format
from common.parsers import RuleSetSourceParser
from policies import selectors, services
from policies.api import rule_set_serializers as s
from tenancy.actor import Actor
from tenancy.models import ApiKey, Team
from tenancy.principal import ApiKeyRequest

WRITE = (ApiKey.Scope.POLICIES_WRITE,)
PUBLISH = (ApiKey.Scope.POLICIES_PUBLISH,)
READ = (ApiKey.Scope.RUNTIME,)


class RuleSetsView(APIView):
    required_scopes = {"GET": READ, "POST": WRITE}
    parser_classes = [RuleSetSourceParser]

    @extend_schema(operation_id="v1_rule_sets_list", responses=OpenApiTypes.OBJECT)
    def get(self, request: ApiKeyRequest) -> Response:
        team_id = request.auth.team_id
        return Response(
            {
                "data": [s.version_summary(v) for v in selectors.rule_set_versions_of_team(team_id=team_id)],
                "publications": [
                    s.publication_output(p) for p in selectors.rule_set_publications_of_team(team_id=team_id)
                ],
            }
        )

    @extend_schema(
        request={"application/yaml": OpenApiTypes.STR, "application/json": OpenApiTypes.OBJECT},
        responses={201: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
        examples=[
            OpenApiExample("short form", value="rules:\n  - {name: no_prod, tool: deploy, action: deny}\n")
        ],
    )
    def post(self, request: ApiKeyRequest) -> Response:
        # RuleSetSourceParser gives text; for an empty body DRF runs no parser and gives {}.
        source_text = request.data if isinstance(request.data, str) else ""
        # JSON or YAML by Content-Type, as the gateway serves it by Accept; anything else is YAML.
        uploaded_as = SOURCE_MEDIA_TYPES[source_format(request.content_type) or "yaml"]
        version = services.rule_set_version_create(
            team=Team.objects.get(pk=request.auth.team_id),
            source_text=source_text,
            content_type=uploaded_as,
            author=Actor.of_request(request),
        )
        return Response(s.version_summary(version), status=status.HTTP_201_CREATED)


class RuleSetVersionView(APIView):
    required_scopes = READ

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: ApiKeyRequest, version: int) -> Response:
        found = selectors.rule_set_version_get(team_id=request.auth.team_id, number=version)
        return Response(s.version_detail(found))


class RuleSetPublishView(APIView):
    required_scopes = PUBLISH

    @extend_schema(
        request=None, responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT, 422: OpenApiTypes.OBJECT}
    )
    def post(self, request: ApiKeyRequest, version: int) -> Response:
        found = selectors.rule_set_version_get(team_id=request.auth.team_id, number=version)
        publication = services.rule_set_version_publish(version=found, actor=Actor.of_request(request))
        found.refresh_from_db()
        return Response({**s.version_summary(found), "publication": s.publication_output(publication)})


class RuleSetDiffView(APIView):
    required_scopes = READ

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: ApiKeyRequest, before: int, after: int) -> Response:
        return Response(
            selectors.rule_set_versions_diff(team_id=request.auth.team_id, before=before, after=after)
        )


class RuleSetPreviewView(APIView):
    # The examples carry recorded arguments: reading decisions is needed as well as writing policies.
    required_scopes = (ApiKey.Scope.POLICIES_WRITE, ApiKey.Scope.DECISIONS_READ)

    @extend_schema(request=None, parameters=[s.PreviewQuerySerializer], responses=OpenApiTypes.OBJECT)
    def post(self, request: ApiKeyRequest, version: int) -> Response:
        query = s.PreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.rule_set_version_get(team_id=request.auth.team_id, number=version)
        preview = selectors.rule_set_impact_preview(
            team_id=request.auth.team_id, document=found.document, limit=query.validated_data["limit"]
        )
        return Response({"version": found.number, **preview})
