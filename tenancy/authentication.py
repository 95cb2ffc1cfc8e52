"""Authentication by the SDK's ``X-Veto-API-Key`` header, for DRF views (gateway endpoints: runtime/authentication.py).

Both paths refuse the same things the same way: two ``X-Veto-API-Key`` headers (400
``ambiguous_api_key``: the gateway would have read the last, Django joins them with a comma),
a missing or unknown/revoked key (401), and an address locked out for trying too many unknown
keys (429 ``too_many_failed_keys``, see tenancy/throttle.py). A revoked key is no guess and
does not count: an agent left running with one must not lock out its neighbours behind one NAT.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from common.errors import InvalidInput
from tenancy import throttle
from tenancy.principal import ApiKeyPrincipal
from tenancy.selectors import principal_for_token, token_is_known
from tenancy.services import api_key_touch, api_key_touch_due

API_KEY_HEADER = "X-Veto-API-Key"
_GATEWAY_HEADER = API_KEY_HEADER.lower()
INVALID_KEY_MESSAGE = "Invalid or revoked API key."
MISSING_KEY_MESSAGE = "Missing X-Veto-API-Key header."

def _ambiguous() -> InvalidInput:
    return InvalidInput(
        f"the request has more than one {API_KEY_HEADER} header; send exactly one",
        code="ambiguous_api_key",
        details={"header": API_KEY_HEADER},
    )


def _header_count(request: Request) -> int:
    """How many ``X-Veto-API-Key`` headers the client sent. Under ASGI, Django joins repeated
    headers into one value with ``,`` (keys never contain one); the raw ASGI headers say for sure."""
    scope = getattr(request._request, "scope", None)
    if scope is not None:
        return sum(1 for name, _ in scope.get("headers", ()) if name.lower() == b"x-veto-api-key")
    value = request.META.get("HTTP_X_VETO_API_KEY")
    return 0 if value is None else value.count(",") + 1


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[AnonymousUser, ApiKeyPrincipal] | None:
        token = request.META.get("HTTP_X_VETO_API_KEY")
        if token is None:
            return None
        if "," in token and _header_count(request) > 1:
            raise _ambiguous()
        if throttle.lockouts:
            throttle.refuse_if_locked_out(throttle.address_key(request.META.get("REMOTE_ADDR")))
        principal = principal_for_token(token.strip())
        if principal is None:
            address = throttle.address_key(request.META.get("REMOTE_ADDR"))
            locked_out = None if token_is_known(token.strip()) else throttle.failed_lookup(address)
            if locked_out is not None:
                raise locked_out
            raise AuthenticationFailed(INVALID_KEY_MESSAGE)
        if api_key_touch_due(key_id=principal.key_id):
            api_key_touch(key_id=principal.key_id)
        return AnonymousUser(), principal

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when the key is missing.
        return API_KEY_HEADER
