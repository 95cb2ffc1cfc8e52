"""``GET /v1/rule-sets/active``: the team's active rule set for SDKs and sync jobs, with ETags and
``?wait=`` long-polls."""

from __future__ import annotations

import time

from common.database import run_in_db_thread
from common.errors import InvalidInput, NotFound
from policies import selectors
from policies.models import RuleSetVersion
from runtime.authentication import authenticate_gateway_request
from runtime.gateway import GatewayRequest, GatewayResponse
from runtime.waiters import rule_set_change_waiter, woken_within
from tenancy.models import ApiKey

MAX_WAIT_SECONDS = 60


def _wanted_format(accept: str | None) -> str | None:
    accept = (accept or "").lower()
    if "yaml" in accept:
        return RuleSetVersion.SourceFormat.YAML
    if "json" in accept:
        return RuleSetVersion.SourceFormat.JSON
    return None


def _entity_tags(header: str | None) -> set[str]:
    # If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" matches "x".
    return {tag.strip().removeprefix("W/") for tag in (header or "").split(",") if tag.strip()}


def _wait_seconds(request: GatewayRequest) -> float:
    raw = request.query("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError as exc:
        raise InvalidInput(f"wait: {raw!r} is not a number of seconds") from exc
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise InvalidInput(f"wait: must be between 0 and {MAX_WAIT_SECONDS} seconds")
    return seconds


async def rule_set_active(request: GatewayRequest) -> GatewayResponse:
    """The active rule set as YAML or JSON (by ``Accept``) with a strong ETag; ``If-None-Match``
    answers 304, and with ``?wait=SECONDS`` (at most 60) the answer waits for a newer version."""
    principal = await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
    wanted = _wanted_format(request.header("accept"))
    known = _entity_tags(request.header("if-none-match"))
    wait = _wait_seconds(request)

    def current() -> selectors.RuleSetRepresentation | None:
        return selectors.active_rule_set_representation(team_id=principal.team_id, wanted=wanted)

    active = await run_in_db_thread(current)
    unchanged = active is not None and (active.etag in known or "*" in known)
    if wait > 0 and (unchanged or active is None):
        deadline = time.monotonic() + wait
        with rule_set_change_waiter(principal.team_id) as published:
            # Registered first, then re-read: a publish in between is not missed.
            active = await run_in_db_thread(current)
            while active is None or active.etag in known:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not await woken_within(published, remaining):
                    break
                active = await run_in_db_thread(current)
        # The key may have been revoked while this waited: answer as a new request would.
        await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
    if active is None:
        raise NotFound("this team has no active rule set")
    headers = [
        (b"etag", active.etag.encode()),
        (b"vary", b"Accept"),
        (b"cache-control", b"no-cache"),
        (b"x-veto-rule-set-version", str(active.version).encode()),
    ]
    if active.etag in known or "*" in known:
        return GatewayResponse(304, b"", headers=headers)
    return GatewayResponse(200, active.body, headers=headers, content_type=active.content_type.encode())
