"""The authenticated caller of the API: an API key (a team's, or a person's), reduced to what views need."""

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
    # A personal key's person (and the scopes above are already cut to their current role);
    # None for a team's key, which is no person.
    user_id: int | None = None
    key_name: str = ""

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_personal(self) -> bool:
        return self.user_id is not None

    @property
    def display_name(self) -> str:
        """How the trail names this key (a team key has no person to name)."""
        return f"API key {self.key_name} ({self.key_prefix}…)"


class ApiKeyRequest(Request):
    """The request type of API views: every one is behind ``HasApiKey`` (the default permission),
    so ``auth`` is the caller's principal. For annotations only; DRF builds a plain ``Request``."""

    auth: ApiKeyPrincipal
