"""Per-tool policies (``/v1/policies``) and policy drafts (``/v1/policy-drafts``), as
``veto.admin.VetoAdmin`` calls them; ``GET /v1/policies/{toolName}`` is also what the SDK's
PolicyCache fetches to decide calls locally (see ``selectors.tool_policy_server_marker``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import iso, parse_uuid_or_404
from common.edge import SOURCE_MEDIA_TYPES
from common.errors import NotFound
from policies import selectors, services
from policies.api import policy_serializers as s
from policies.models import ToolPolicy
from policies.permissions import LOOSEN_TOOL_POLICY_SCOPE
from tenancy.actor import Actor
from tenancy.models import ApiKey, Team
from tenancy.principal import ApiKeyRequest

READ = (ApiKey.Scope.RUNTIME,)
WRITE = (ApiKey.Scope.POLICIES_WRITE,)
PUBLISH = (ApiKey.Scope.POLICIES_PUBLISH,)
TOOL_NAME = OpenApiParameter("tool_name", OpenApiTypes.STR, OpenApiParameter.PATH, description="URL-encoded")
DRAFT_ID = OpenApiParameter("draft_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
POLICY_EXAMPLE = OpenApiExample(
    "constraints",
    value={
        "toolName": "transfer_funds",
        "mode": "deterministic",
        "constraints": [
            {"argumentName": "amount", "enabled": True, "greaterThan": 0, "maximum": 1000},
            {"argumentName": "currency", "enabled": True, "required": True, "enum": ["EUR", "USD"]},
        ],
    },
)


def _own_project(request: ApiKeyRequest, project_id: Any) -> None:
    """A key names only its own team as ``projectId``; any other is not found (not forbidden)."""
    if project_id is not None and parse_uuid_or_404(project_id, what="project") != request.auth.team_id:
        raise NotFound("project not found")


def _output(
    policy: ToolPolicy,
    rule_set: selectors.ActiveRuleSet | None = None,
    counters: selectors.TeamToolPolicies | None = None,
) -> dict[str, Any]:
    if rule_set is None:
        rule_set = selectors.active_rule_set_for_reading(team_id=policy.team_id)
    if counters is None:
        counters = selectors.active_tool_policies_for_reading(team_id=policy.team_id)
    marker = selectors.tool_policy_server_marker(policy=policy, rule_set=rule_set, team_policies=counters)
    rate_limits = s.rate_limits_output(rule_set.rules.rules_for(policy.tool_name))
    return s.policy_output(policy, session_constraints=marker, rate_limits=rate_limits)


class PoliciesView(APIView):
    required_scopes = {"GET": READ, "POST": WRITE}

    @extend_schema(
        operation_id="v1_policies_list",
        parameters=[s.PolicyListQuerySerializer],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: ApiKeyRequest) -> Response:
        query = s.PolicyListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        _own_project(request, query.validated_data.get("projectId"))
        team_id = request.auth.team_id
        rule_set = selectors.active_rule_set_for_reading(team_id=team_id)
        counters = selectors.active_tool_policies_for_reading(team_id=team_id)
        policies = selectors.tool_policies_of_team(team_id=team_id, **query.filters())
        return Response({"data": [_output(p, rule_set, counters) for p in policies]})

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        examples=[POLICY_EXAMPLE],
        responses={201: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
    )
    def post(self, request: ApiKeyRequest) -> Response:
        data = request.data
        if isinstance(data, dict):
            _own_project(request, data.get("projectId"))
        policy = services.tool_policy_create(
            team_id=request.auth.team_id,
            data=data,
            actor=Actor.of_request(request),
        )
        return Response(_output(policy), status=status.HTTP_201_CREATED)


class _IgnoreFormatParameter(DefaultContentNegotiation):
    """DRF reads ``?format=`` as a renderer override (and 404s on ``yaml``); here it is the
    export's own parameter, and the view writes its response itself."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


POLICY_EXPORT = {
    "type": "object",
    "required": ["projectId", "project", "exportedAt", "policies"],
    "properties": {
        "projectId": {"type": "string", "format": "uuid"},
        "project": {"type": "string"},
        "exportedAt": {"type": "string", "format": "date-time"},
        "policies": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["toolName", "mode", "version", "isActive", "constraints"],
                "properties": {
                    "toolName": {"type": "string"},
                    "mode": {"type": "string", "enum": ["deterministic", "llm"]},
                    "version": {"type": "integer"},
                    "isActive": {"type": "boolean"},
                    "constraints": {"type": "array", "items": {"type": "object"}},
                    "outputRules": {},
                    "llmConfig": {},
                    "sessionConstraints": {},
                },
            },
        },
    },
}


class PoliciesExportView(APIView):
    required_scopes = READ
    content_negotiation_class = _IgnoreFormatParameter

    @extend_schema(
        parameters=[s.PolicyExportQuerySerializer],
        # The same document either way: YAML is read back as the object it writes, not a string.
        responses={(200, "application/json"): POLICY_EXPORT, (200, "application/yaml"): POLICY_EXPORT},
    )
    def get(self, request: ApiKeyRequest) -> HttpResponse:
        query = s.PolicyExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        _own_project(request, query.validated_data.get("projectId"))
        team = Team.objects.get(pk=request.auth.team_id)
        policies = selectors.tool_policies_of_team(team_id=team.id, **query.filters())
        document = {
            "projectId": str(team.id),
            "project": team.slug,
            "exportedAt": iso(timezone.now()),
            "policies": [s.policy_export_entry(p) for p in policies],
        }
        suffix = query.validated_data["format"]
        if suffix == "yaml":
            body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        else:
            body = json.dumps(document, indent=2)
        response = HttpResponse(body, content_type=SOURCE_MEDIA_TYPES[suffix])
        response["Content-Disposition"] = f'attachment; filename="policies-{team.slug}.{suffix}"'
        return response


class ToolPolicyView(APIView):
    """One tool's policy. A tool without one is a 404, which the SDK's PolicyCache reads as
    "no policy: ask the server". ``policies:write`` creates and tightens; a change that loosens
    (and DELETE, always) takes what deactivate takes, or it is a 403 ``loosening_not_allowed``."""

    required_scopes = {"GET": READ, "PUT": WRITE, "DELETE": WRITE}

    @extend_schema(parameters=[TOOL_NAME], responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT})
    def get(self, request: ApiKeyRequest, tool_name: str) -> Response:
        return Response(_output(selectors.tool_policy_get(team_id=request.auth.team_id, tool_name=tool_name)))

    @extend_schema(
        parameters=[TOOL_NAME],
        request=OpenApiTypes.OBJECT,
        examples=[POLICY_EXAMPLE],
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT},
    )
    def put(self, request: ApiKeyRequest, tool_name: str) -> Response:
        policy = selectors.tool_policy_get(team_id=request.auth.team_id, tool_name=tool_name)
        updated = services.tool_policy_update(
            policy=policy,
            data=request.data,
            actor=Actor.of_request(request),
        )
        return Response(_output(updated))

    @extend_schema(parameters=[TOOL_NAME], responses={204: None, 404: OpenApiTypes.OBJECT})
    def delete(self, request: ApiKeyRequest, tool_name: str) -> Response:
        policy = selectors.tool_policy_get(team_id=request.auth.team_id, tool_name=tool_name)
        services.tool_policy_delete(policy=policy, actor=Actor.of_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class _ToolPolicyActivationView(APIView):
    required_scopes = (LOOSEN_TOOL_POLICY_SCOPE,)
    is_active: bool

    def post(self, request: ApiKeyRequest, tool_name: str) -> Response:
        policy = selectors.tool_policy_get(team_id=request.auth.team_id, tool_name=tool_name)
        current = services.tool_policy_set_active(
            policy=policy,
            is_active=self.is_active,
            actor=Actor.of_request(request),
        )
        return Response(_output(current))


@extend_schema(
    parameters=[TOOL_NAME], request=None, responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT}
)
class ToolPolicyActivateView(_ToolPolicyActivationView):
    is_active = True


@extend_schema(
    parameters=[TOOL_NAME], request=None, responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT}
)
class ToolPolicyDeactivateView(_ToolPolicyActivationView):
    is_active = False


# --- Policy drafts -------------------------------------------------------------------------------


def _draft(request: ApiKeyRequest, draft_id: str) -> Any:
    return selectors.policy_draft_get(
        team_id=request.auth.team_id, draft_id=parse_uuid_or_404(draft_id, what="policy draft")
    )


class PolicyDraftsView(APIView):
    required_scopes = {"GET": READ, "POST": WRITE}

    @extend_schema(
        operation_id="v1_policy_drafts_list",
        parameters=[s.PolicyDraftListQuerySerializer],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: ApiKeyRequest) -> Response:
        query = s.PolicyDraftListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        _own_project(request, query.validated_data.get("projectId"))
        drafts = selectors.policy_drafts_of_team(
            team_id=request.auth.team_id,
            status=query.validated_data.get("status"),
            created_by_agent_id=query.validated_data.get("createdByAgentId"),
        )
        return Response({"data": [s.policy_draft_output(d) for d in drafts]})

    @extend_schema(
        request=s.PolicyDraftCreateInputSerializer,
        responses={201: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
    )
    def post(self, request: ApiKeyRequest) -> Response:
        data = s.PolicyDraftCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        _own_project(request, values.get("projectId"))
        draft = services.policy_draft_create(
            team_id=request.auth.team_id,
            name=values["name"],
            description=values.get("description") or "",
            rules=values["rules"],
            status=values.get("status") or "draft",
            created_by_agent_id=values.get("createdByAgentId") or "",
            actor=Actor.of_request(request),
        )
        return Response(s.policy_draft_output(draft), status=status.HTTP_201_CREATED)


class PolicyDraftView(APIView):
    required_scopes = READ

    @extend_schema(parameters=[DRAFT_ID], responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT})
    def get(self, request: ApiKeyRequest, draft_id: str) -> Response:
        return Response(s.policy_draft_output(_draft(request, draft_id)))


class PolicyDraftApproveView(APIView):
    required_scopes = PUBLISH

    @extend_schema(
        parameters=[DRAFT_ID],
        request=None,
        responses={
            200: OpenApiTypes.OBJECT,
            403: OpenApiTypes.OBJECT,
            409: OpenApiTypes.OBJECT,
            422: OpenApiTypes.OBJECT,
        },
    )
    def post(self, request: ApiKeyRequest, draft_id: str) -> Response:
        draft = services.policy_draft_approve(
            draft=_draft(request, draft_id),
            actor=Actor.of_request(request),
        )
        return Response(s.policy_draft_output(draft))


class PolicyDraftRejectView(APIView):
    required_scopes = PUBLISH

    @extend_schema(
        parameters=[DRAFT_ID],
        request=s.PolicyDraftRejectInputSerializer,
        responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
    )
    def post(self, request: ApiKeyRequest, draft_id: str) -> Response:
        data = s.PolicyDraftRejectInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        draft = services.policy_draft_reject(
            draft=_draft(request, draft_id),
            reason=data.validated_data.get("reason") or "",
            actor=Actor.of_request(request),
        )
        return Response(s.policy_draft_output(draft))
