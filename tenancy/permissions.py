"""API permissions: a valid key, holding the scopes the view declares in ``required_scopes``
(a tuple, or a dict of tuples by HTTP method; the default is the runtime scope)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tenancy.authentication import MISSING_KEY_MESSAGE
from tenancy.models import ApiKey
from tenancy.principal import ApiKeyPrincipal
from tenancy.scopes import require_scopes

_RUNTIME = (ApiKey.Scope.RUNTIME,)


class HasApiKey(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, ApiKeyPrincipal):
            # DRF's own exception: DRF adds WWW-Authenticate to it (and answers 401, not 403).
            raise NotAuthenticated(MISSING_KEY_MESSAGE)
        required = getattr(view, "required_scopes", _RUNTIME)
        if isinstance(required, dict):
            required = required.get(request.method, _RUNTIME)
        require_scopes(principal, required)
        return True
