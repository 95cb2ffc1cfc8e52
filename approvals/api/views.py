"""The approvals admin API, as ``VetoAdmin`` calls it. (The SDK's poll, ``GET /v1/approvals/{id}``
with ``?wait=``, is a gateway endpoint: runtime/endpoints/approvals.py.)"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals import selectors, services
from approvals.api import serializers as s
from approvals.models import Approval
from common.api import parse_uuid_or_404
from common.errors import ApplicationError, NotFound
from tenancy.actor import Actor
from tenancy.models import ApiKey
from tenancy.principal import ApiKeyRequest

READ = (ApiKey.Scope.DECISIONS_READ,)
RESOLVE = (ApiKey.Scope.APPROVALS_RESOLVE,)


class ApprovalListView(APIView):
    required_scopes = READ

    @extend_schema(parameters=[s.ApprovalListQuery], responses=OpenApiTypes.OBJECT)
    def get(self, request: ApiKeyRequest) -> Response:
        query = s.ApprovalListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        # Past their deadline, they read expired (or escalated) now, not after the next sweep.
        services.approvals_expire_due(team_ids=[request.auth.team_id])
        approvals = selectors.approvals_of_team(
            team_id=request.auth.team_id,
            status=query.validated_data.get("status"),
            tool_name=query.validated_data.get("toolName"),
        )[: query.validated_data["limit"]]
        return Response({"data": [s.approval_output(a) for a in approvals]})


class ApprovalPendingListView(APIView):
    required_scopes = READ

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: ApiKeyRequest) -> Response:
        services.approvals_expire_due(team_ids=[request.auth.team_id])  # as in the list above
        approvals = selectors.approvals_of_team(team_id=request.auth.team_id, status=Approval.Status.PENDING)
        # Oldest first: the one closest to its deadline leads.
        oldest_first = approvals.order_by("created_at")[: s.APPROVALS_LISTED_MAX]
        return Response({"data": [s.approval_output(a) for a in oldest_first]})


class ApprovalDetailView(APIView):
    """Reached only for ids that are not UUID-shaped (the gateway serves the rest): a JSON 404."""

    @extend_schema(exclude=True)
    def get(self, request: ApiKeyRequest, approval_id: str) -> Response:
        approval = selectors.approval_get_for_team(
            team_id=request.auth.team_id, approval_id=parse_uuid_or_404(approval_id, what="approval")
        )
        return Response(s.approval_output(approval))


class ApprovalTrailView(APIView):
    """``GET /v1/approvals/{id}/trail``: what the gateway's ``GET /v1/approvals/{id}`` cannot
    say, how the approval got to its current state. Read like the other approval reads of this
    API (``decisions:read``: it names people and their comments, which the agent's runtime key
    has no need for); another team's id is a 404, as an unknown one."""

    required_scopes = READ

    @extend_schema(
        summary="An approval's trail",
        description=(
            "Everything that happened to the approval, oldest first: `raised` (the agent's call), "
            "then each `approve` (a vote towards the quorum), `refused` (someone not allowed to "
            "decide tried), `escalated` (the deadline handed it to other groups), and the outcome: "
            "`approved` (quorum reached), `deny` or `expired`. Past its deadline an approval is "
            "settled first, so the trail never ends in a pending that nobody may decide."
        ),
        parameters=[
            OpenApiParameter(
                "approval_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The approval's id"
            )
        ],
        # (inline: a serializer's own ``data`` attribute cannot be a field of it)
        responses={
            200: inline_serializer("ApprovalTrail", fields={"data": s.TrailEntryOutput(many=True)}),
            404: OpenApiTypes.OBJECT,
        },
    )
    def get(self, request: ApiKeyRequest, approval_id: str) -> Response:
        approval = selectors.approval_get_for_team(
            team_id=request.auth.team_id, approval_id=parse_uuid_or_404(approval_id, what="approval")
        )
        approval = services.approval_settle_due(approval=approval)
        entries = selectors.approval_trail_entries(approval=approval)
        return Response({"data": [s.trail_entry_output(e) for e in entries]})


def _resolve_one(request: ApiKeyRequest, approval_id: str, data: dict) -> Approval:
    approval = selectors.approval_get_for_team(
        team_id=request.auth.team_id, approval_id=parse_uuid_or_404(approval_id, what="approval")
    )
    outcome = services.approval_resolve(
        approval=approval,
        actor=Actor.of_request(request),
        action=data["action"],
        resolved_by=data.get("resolvedBy"),
        comment=data.get("comment", ""),
    )
    return outcome.approval


class ApprovalResolveView(APIView):
    required_scopes = RESOLVE

    @extend_schema(request=s.ResolveInput, responses=OpenApiTypes.OBJECT)
    def post(self, request: ApiKeyRequest, approval_id: str) -> Response:
        data = s.ResolveInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(s.approval_output(_resolve_one(request, approval_id, data.validated_data)))


class ApprovalBatchResolveView(APIView):
    required_scopes = RESOLVE

    @extend_schema(request=s.BatchResolveInput, responses=OpenApiTypes.OBJECT)
    def post(self, request: ApiKeyRequest) -> Response:
        data = s.BatchResolveInput(data=request.data)
        data.is_valid(raise_exception=True)
        results = []
        # Each item stands alone: one refused or already-resolved approval does not sink the rest.
        for item in data.validated_data["approvals"]:
            try:
                approval = _resolve_one(request, item["id"], item)
                results.append({"id": item["id"], "status": approval.status, "action": item["action"]})
            except ApplicationError as exc:
                status = "not_found" if isinstance(exc, NotFound) else "error"
                results.append(
                    {"id": item["id"], "status": status, "action": item["action"], "error": exc.message}
                )
        if not request.auth.is_personal:
            # A team's key is no person: no item was decided (each one found keeps the refusal in
            # its trail), and the batch as a whole is refused, as a single resolve would be.
            raise services.PersonalKeyRequired.for_key(request.auth)
        return Response({"data": results})
