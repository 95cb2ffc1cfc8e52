"""Authentication of gateway requests by the SDK's ``X-Veto-API-Key`` header: the same refusals,
in the same words, as the DRF authentication class (tenancy/authentication.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from common.database import run_in_db_thread
from common.errors import NotAuthenticated
from runtime.gateway import GatewayRequest
from tenancy import throttle
from tenancy.authentication import (
    _GATEWAY_HEADER,
    API_KEY_HEADER,
    INVALID_KEY_MESSAGE,
    MISSING_KEY_MESSAGE,
    _ambiguous,
)
from tenancy.principal import ApiKeyPrincipal
from tenancy.scopes import require_scopes
from tenancy.selectors import principal_for_token_async, token_is_known
from tenancy.services import api_key_touch, api_key_touch_due

# Last-used stamps written in the background: held here so the tasks are not collected early.
_background: set[asyncio.Task[Any]] = set()


async def authenticate_gateway_request(request: GatewayRequest, *, scope: str) -> ApiKeyPrincipal:
    """The caller's principal, holding ``scope``; the database is asked only on a cache miss."""
    if request.duplicate_headers and _GATEWAY_HEADER in request.duplicate_headers:
        raise _ambiguous()
    token = (request.header(API_KEY_HEADER) or "").strip()
    if not token:
        raise NotAuthenticated(MISSING_KEY_MESSAGE)
    if throttle.lockouts:
        throttle.refuse_if_locked_out(throttle.address_key(request.client))
    principal = await principal_for_token_async(token)
    if principal is None:
        known = await run_in_db_thread(token_is_known, token)
        locked_out = (
            None if known else await throttle.failed_lookup_async(throttle.address_key(request.client))
        )
        if locked_out is not None:
            raise locked_out
        raise NotAuthenticated(INVALID_KEY_MESSAGE)
    require_scopes(principal, (scope,))
    if api_key_touch_due(key_id=principal.key_id):
        task = asyncio.ensure_future(run_in_db_thread(api_key_touch, key_id=principal.key_id))
        _background.add(task)
        task.add_done_callback(_background.discard)
    return principal
