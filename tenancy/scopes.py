"""The scope check on an API key, for the gateway (runtime/authentication.py, runtime/endpoints/)
and DRF (tenancy/permissions.py) alike: one refusal, in one wording, naming what is missing."""

from __future__ import annotations

from collections.abc import Iterable

from common.errors import PermissionDenied
from tenancy.principal import ApiKeyPrincipal


class MissingScope(PermissionDenied):
    """403 ``forbidden``: the key lacks scopes the operation needs (``details.missing_scopes``)."""

    def __init__(self, missing: list[str], *, because: str = "") -> None:
        why = f" ({because})" if because else ""
        super().__init__(
            f"This API key lacks the scope(s): {', '.join(missing)}{why}.",
            details={"missing_scopes": missing},
        )


def require_scopes(principal: ApiKeyPrincipal, required: Iterable[str], *, because: str = "") -> None:
    """Refuse (``MissingScope``) unless ``principal`` holds every scope in ``required``;
    ``because`` says what needs them, where the operation alone does not."""
    missing = [str(scope) for scope in required if not principal.has_scope(scope)]
    if missing:
        raise MissingScope(missing, because=because)
