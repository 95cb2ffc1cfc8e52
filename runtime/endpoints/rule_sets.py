"""``GET /v1/rule-sets/active``: the team's active rule set for SDKs and sync jobs, with ETags and
``?wait=`` long-polls."""

from __future__ import annotations

import time

from common.database import run_in_db_thread
from common.edge import source_format, wait_seconds
from common.errors import NotFound
from policies import selectors
from runtime.authentication import authenticate_gateway_request
from runtime.gateway import GatewayRequest, GatewayResponse
from runtime.waiters import rule_set_change_waiter, woken_within
from tenancy.models import ApiKey


def _entity_tags(header: str | None) -> set[str]:
    # If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" matches "x".
    return {tag.strip().removeprefix("W/") for tag in (header or "").split(",") if tag.strip()}


async def rule_set_active(request: GatewayRequest) -> GatewayResponse:
    """The active rule set as YAML or JSON (by ``Accept``, ``common.edge.source_format``) with a
    strong ETag; ``If-None-Match`` answers 304, and with ``?wait=SECONDS``
    (``common.edge.wait_seconds``) the answer waits for a newer version."""
    principal = await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
    wanted = source_format(request.header("accept"))
    known = _entity_tags(request.header("if-none-match"))
    wait = wait_seconds(request.query("wait"))

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
