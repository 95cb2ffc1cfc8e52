"""The authenticated caller of the API: an API key, reduced to what views need."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from rest_framework.request import Request


@dataclass(frozen=True, slots=True)
class ApiKeyPrincipal:
    key_id: uuid.UUID
    key_prefix: str
    team_id: uuid.UUID
    team_slug: str
    organization_id: uuid.UUID
    scopes: frozenset[str]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class ApiKeyRequest(Request):
    """The request type of API views: every one is behind ``HasApiKey`` (the default permission),
    so ``auth`` is the caller's principal. For annotations only; DRF builds a plain ``Request``."""

    auth: ApiKeyPrincipal
