"""API permissions: a valid key, holding the scopes the view declares in ``required_scopes``
(a tuple, or a dict of tuples by HTTP method; the default is the runtime scope)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tenancy.models import ApiKey
from tenancy.principal import ApiKeyPrincipal

_RUNTIME = (ApiKey.Scope.RUNTIME,)


class HasApiKey(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, ApiKeyPrincipal):
            raise NotAuthenticated("Missing X-Veto-API-Key header.")
        required = getattr(view, "required_scopes", _RUNTIME)
        if isinstance(required, dict):
            required = required.get(request.method, _RUNTIME)
        missing = [scope for scope in required if not principal.has_scope(scope)]
        if missing:
            raise PermissionDenied(f"This API key lacks the scope(s): {', '.join(missing)}.")
        return True
