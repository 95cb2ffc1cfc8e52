"""Authentication by the SDK's ``X-Veto-API-Key`` header, for DRF views and gateway endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from common.errors import NotAuthenticated, PermissionDenied
from common.gateway import GatewayRequest, run_db
from tenancy.principal import ApiKeyPrincipal
from tenancy.selectors import principal_for_token, principal_for_token_async
from tenancy.services import api_key_touch, api_key_touch_due

API_KEY_HEADER = "X-Veto-API-Key"
INVALID_KEY_MESSAGE = "Invalid or revoked API key."
MISSING_KEY_MESSAGE = "Missing X-Veto-API-Key header."

# Fire-and-forget last_used_at writes; kept referenced so they are not garbage-collected mid-flight.
_background: set[asyncio.Task[Any]] = set()


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[AnonymousUser, ApiKeyPrincipal] | None:
        token = request.META.get("HTTP_X_VETO_API_KEY")
        if token is None:
            return None
        principal = principal_for_token(token.strip())
        if principal is None:
            raise AuthenticationFailed(INVALID_KEY_MESSAGE)
        if api_key_touch_due(key_id=principal.key_id):
            api_key_touch(key_id=principal.key_id)
        return AnonymousUser(), principal

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when the key is missing.
        return API_KEY_HEADER


async def authenticate_gateway_request(request: GatewayRequest, *, scope: str) -> ApiKeyPrincipal:
    """The caller's principal, holding ``scope``; the database is asked only on a cache miss."""
    token = (request.header(API_KEY_HEADER) or "").strip()
    if not token:
        raise NotAuthenticated(MISSING_KEY_MESSAGE)
    principal = await principal_for_token_async(token)
    if principal is None:
        raise NotAuthenticated(INVALID_KEY_MESSAGE)
    if not principal.has_scope(scope):
        raise PermissionDenied(f"This API key lacks the scope(s): {scope}.")
    if api_key_touch_due(key_id=principal.key_id):
        task = asyncio.ensure_future(run_db(api_key_touch, key_id=principal.key_id))
        _background.add(task)
        task.add_done_callback(_background.discard)
    return principal
