"""/v1/webhooks: a team's webhook endpoints, their secrets and delivery log. Every operation
takes ``webhooks:manage`` (reads too: an endpoint's URL and routing key are credentials);
another team's endpoint is a 404, as an unknown one. Thin: input serializers, one service or
selector call, output dicts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import iso, parse_uuid_or_404
from tenancy.actor import Actor
from tenancy.models import ApiKey, Team
from tenancy.principal import ApiKeyRequest
from webhooks import selectors, services
from webhooks.api import serializers as s
from webhooks.models import WebhookEndpoint

MANAGE = (ApiKey.Scope.WEBHOOKS_MANAGE,)
WEBHOOK_ID = OpenApiParameter(
    "webhook_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The endpoint's id"
)
DELIVERY_ID = OpenApiParameter(
    "delivery_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The delivery's id"
)
TAGS = ["webhooks"]


def _valid(serializer: serializers.Serializer) -> dict[str, Any]:
    """The validated data, or a 400 naming the first field at fault (``details.field``) and
    listing every problem (``details.errors``), as the services' own refusals name theirs."""
    if serializer.is_valid():
        return dict(serializer.validated_data)
    errors = serializer.errors
    field, problems = next(iter(errors.items()))
    if isinstance(problems, dict):  # a list's item: {"events": {0: ["..."]}}
        index, problems = next(iter(problems.items()))
        field = f"{field}[{index}]"
    reason = " ".join(str(p) for p in problems) if isinstance(problems, list) else str(problems)
    if field == "non_field_errors":
        field = "(body)"
    raise services.InvalidWebhook(field, reason, errors=errors)


def _endpoint(request: ApiKeyRequest, webhook_id: str) -> WebhookEndpoint:
    return selectors.endpoint_get_for_team(
        team_id=request.auth.team_id, endpoint_id=parse_uuid_or_404(webhook_id, what="webhook endpoint")
    )


class WebhooksView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="webhooks_list",
        tags=TAGS,
        summary="The team's webhook endpoints",
        responses={200: inline_serializer("WebhookList", fields={"data": s.EndpointOutput(many=True)})},
    )
    def get(self, request: ApiKeyRequest) -> Response:
        endpoints = selectors.endpoints_of_team(team_id=request.auth.team_id)
        return Response({"data": [s.endpoint_output(e) for e in endpoints]})

    @extend_schema(
        operation_id="webhook_create",
        tags=TAGS,
        summary="Create a webhook endpoint",
        description="The answer carries the signing secret (`secret`, `whsec_...`): shown this once.",
        request=s.EndpointInput,
        responses={201: s.EndpointWithSecretOutput},
    )
    def post(self, request: ApiKeyRequest) -> Response:
        values = _valid(s.EndpointInput(data=request.data))
        team = Team.objects.get(pk=request.auth.team_id)
        created = services.webhook_endpoint_create(team=team, actor=Actor.of_request(request), values=values)
        return Response({**s.endpoint_output(created.endpoint), "secret": created.secret}, status=201)


class WebhookView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="webhook_get", tags=TAGS, parameters=[WEBHOOK_ID], responses={200: s.EndpointOutput}
    )
    def get(self, request: ApiKeyRequest, webhook_id: str) -> Response:
        return Response(s.endpoint_output(_endpoint(request, webhook_id)))

    @extend_schema(
        operation_id="webhook_update",
        tags=TAGS,
        summary="Change some of an endpoint's settings",
        parameters=[WEBHOOK_ID],
        request=s.EndpointPatch,
        responses={200: s.EndpointOutput},
    )
    def patch(self, request: ApiKeyRequest, webhook_id: str) -> Response:
        endpoint = _endpoint(request, webhook_id)
        changes = _valid(s.EndpointPatch(data=request.data))
        updated = services.webhook_endpoint_update(
            endpoint=endpoint, actor=Actor.of_request(request), changes=changes
        )
        return Response(s.endpoint_output(updated))

    @extend_schema(
        operation_id="webhook_replace",
        tags=TAGS,
        summary="Replace an endpoint's settings",
        description="As creating it: what is left out takes its default. The secret stays.",
        parameters=[WEBHOOK_ID],
        request=s.EndpointInput,
        responses={200: s.EndpointOutput},
    )
    def put(self, request: ApiKeyRequest, webhook_id: str) -> Response:
        endpoint = _endpoint(request, webhook_id)
        values = _valid(s.EndpointInput(data=request.data))
        values.setdefault("url", "")
        updated = services.webhook_endpoint_update(
            endpoint=endpoint, actor=Actor.of_request(request), changes=values
        )
        return Response(s.endpoint_output(updated))

    @extend_schema(operation_id="webhook_delete", tags=TAGS, parameters=[WEBHOOK_ID], responses={204: None})
    def delete(self, request: ApiKeyRequest, webhook_id: str) -> Response:
        services.webhook_endpoint_delete(
            endpoint=_endpoint(request, webhook_id), actor=Actor.of_request(request)
        )
        return Response(status=204)


class WebhookRotateSecretView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="webhook_secret_rotate",
        tags=TAGS,
        summary="Rotate an endpoint's signing secret",
        description=(
            "A new secret, shown this once. The old one keeps signing for `overlap_seconds` "
            "(default 24 h, at most 7 days; 0 stops it at once): meanwhile every delivery carries "
            "a signature by each, so the receiver can switch without losing a message."
        ),
        parameters=[WEBHOOK_ID],
        request=s.RotateInput,
        responses={200: s.RotatedOutput},
    )
    def post(self, request: ApiKeyRequest, webhook_id: str) -> Response:
        endpoint = _endpoint(request, webhook_id)
        data = _valid(s.RotateInput(data=request.data))
        rotated = services.webhook_secret_rotate(
            endpoint=endpoint,
            actor=Actor.of_request(request),
            overlap=timedelta(seconds=data["overlap_seconds"]),
        )
        return Response(
            {
                "id": str(rotated.endpoint.id),
                "secret": rotated.secret,
                "previous_secret_expires_at": iso(rotated.old_expires_at),
            }
        )


class WebhookDeliveriesView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="webhook_deliveries_list",
        tags=TAGS,
        summary="An endpoint's delivery log",
        description="Newest first, each with its attempts (time, status code, latency, the answer's start, next attempt).",
        parameters=[WEBHOOK_ID, s.DeliveryListQuery],
        responses={
            200: inline_serializer(
                "WebhookDeliveryList",
                fields={
                    "data": s.DeliveryOutput(many=True),
                    "next_before": serializers.UUIDField(allow_null=True),
                },
            )
        },
    )
    def get(self, request: ApiKeyRequest, webhook_id: str) -> Response:
        endpoint = _endpoint(request, webhook_id)
        query = _valid(s.DeliveryListQuery(data=request.query_params))
        limit = query.get("limit") or selectors.DELIVERIES_LISTED_DEFAULT
        deliveries = selectors.deliveries_of_endpoint(
            endpoint=endpoint, limit=limit, before=query.get("before")
        )
        # A full page may have more behind it: the next page starts before its last delivery.
        next_before = str(deliveries[-1].id) if len(deliveries) == limit else None
        return Response({"data": [s.delivery_output(d) for d in deliveries], "next_before": next_before})


class WebhookTestView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="webhook_test_send",
        tags=TAGS,
        summary="Send a test message",
        description="A delivery marked `test`, signed, retried and logged like any other.",
        parameters=[WEBHOOK_ID],
        request=s.TestInput,
        responses={202: s.DeliveryOutput, 409: OpenApiTypes.OBJECT},
    )
    def post(self, request: ApiKeyRequest, webhook_id: str) -> Response:
        endpoint = _endpoint(request, webhook_id)
        data = _valid(s.TestInput(data=request.data))
        delivery = services.webhook_test_send(
            endpoint=endpoint, actor=Actor.of_request(request), event=data.get("event")
        )
        return Response(s.delivery_output(delivery), status=202)


class WebhookResendView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="webhook_delivery_resend",
        tags=TAGS,
        summary="Send a delivery again",
        description="The same delivery and `webhook-id` (a receiver that has it can drop it), due now.",
        parameters=[WEBHOOK_ID, DELIVERY_ID],
        request=None,
        responses={202: s.DeliveryOutput, 409: OpenApiTypes.OBJECT},
    )
    def post(self, request: ApiKeyRequest, webhook_id: str, delivery_id: str) -> Response:
        endpoint = _endpoint(request, webhook_id)
        delivery = selectors.delivery_get_for_endpoint(
            endpoint=endpoint, delivery_id=parse_uuid_or_404(delivery_id, what="delivery")
        )
        resent = services.webhook_delivery_resend(delivery=delivery, actor=Actor.of_request(request))
        return Response(s.delivery_output(resent), status=202)
