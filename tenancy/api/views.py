"""The SDK's admin calls for tenancy (``VetoAdmin``): organizations, projects (teams), API keys."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import parse_uuid_or_404
from common.errors import NotFound
from tenancy import selectors, services
from tenancy.api import serializers as s
from tenancy.models import ApiKey
from tenancy.principal import ApiKeyRequest

ADMIN = (ApiKey.Scope.ADMIN,)


class OrganizationsView(APIView):
    required_scopes = ADMIN

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: ApiKeyRequest) -> Response:
        organizations = selectors.organizations_administered_by(principal=request.auth)
        return Response({"data": [s.organization_output(o) for o in organizations]})

    @extend_schema(
        request=s.OrganizationCreateInputSerializer,
        responses={
            201: OpenApiTypes.OBJECT,
            409: OpenApiResponse(OpenApiTypes.OBJECT, description="An organization already has this slug"),
        },
    )
    def post(self, request: ApiKeyRequest) -> Response:
        data = s.OrganizationCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        organization = services.organization_create(
            name=data.validated_data["name"],
            slug=data.validated_data.get("slug"),
            created_by_api_key_id=request.auth.key_id,
        )
        return Response(s.organization_output(organization), status=status.HTTP_201_CREATED)


class ProjectsView(APIView):
    required_scopes = ADMIN

    @extend_schema(parameters=[s.ProjectListQuerySerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: ApiKeyRequest) -> Response:
        query = s.ProjectListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        teams = selectors.teams_administered_by(principal=request.auth)
        if "organizationId" in query.validated_data:
            teams = teams.filter(organization_id=query.validated_data["organizationId"])
        return Response({"data": [s.project_output(t) for t in teams]})

    @extend_schema(request=s.ProjectCreateInputSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: ApiKeyRequest) -> Response:
        data = s.ProjectCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        organization = (
            selectors.organizations_administered_by(principal=request.auth)
            .filter(pk=data.validated_data["organizationId"])
            .first()
        )
        if organization is None:
            raise NotFound("organization not found")
        team, api_key, token = services.project_create(
            organization=organization,
            name=data.validated_data["name"],
            created_by_api_key_id=request.auth.key_id,
        )
        return Response({**s.project_output(team), "apiKey": token}, status=status.HTTP_201_CREATED)


class ApiKeysView(APIView):
    required_scopes = ADMIN

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: ApiKeyRequest) -> Response:
        api_keys = selectors.api_keys_administered_by(principal=request.auth)
        return Response({"data": [s.api_key_output(k) for k in api_keys]})

    @extend_schema(request=s.ApiKeyCreateInputSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: ApiKeyRequest) -> Response:
        data = s.ApiKeyCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team_id = data.validated_data.get("projectId", request.auth.team_id)
        team = selectors.teams_administered_by(principal=request.auth).filter(pk=team_id).first()
        if team is None:
            raise NotFound("project not found")
        api_key, token = services.api_key_create_by_principal(
            principal=request.auth,
            team=team,
            name=data.validated_data["name"],
            scopes=data.validated_data.get("scopes"),
        )
        return Response(s.api_key_created_output(api_key, token), status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    required_scopes = ADMIN

    @extend_schema(responses={204: None})
    def delete(self, request: ApiKeyRequest, key_id: str) -> Response:
        api_key = (
            selectors.api_keys_administered_by(principal=request.auth)
            .filter(pk=parse_uuid_or_404(key_id, what="API key"))
            .first()
        )
        if api_key is None:
            raise NotFound("API key not found")
        services.api_key_revoke(api_key=api_key)
        return Response(status=status.HTTP_204_NO_CONTENT)
