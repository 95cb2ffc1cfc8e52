"""The approval poll on the runtime gateway: every waiting agent hits it, so it skips Django's
stack, and ``?wait=`` long-polls without holding a thread."""

from __future__ import annotations

import asyncio
import time
import uuid

from django.conf import settings
from django.utils import timezone

from approvals.api.serializers import approval_output
from approvals.models import Approval
from approvals.selectors import approval_get_for_team
from approvals.services import approval_settle_due
from common.api import parse_uuid_or_404
from common.database import run_in_db_thread
from common.edge import wait_seconds
from runtime.authentication import authenticate_gateway_request
from runtime.gateway import GatewayRequest, GatewayResponse, json_response
from runtime.waiters import approval_change_waiter
from tenancy.models import ApiKey


def _current(team_id: uuid.UUID, approval_id: uuid.UUID) -> Approval:
    """The team's approval as of now: past its deadline it reads expired (or escalated), whether
    or not the sweep has run (``approval_settle_due``: no query when nothing is due)."""
    return approval_settle_due(approval=approval_get_for_team(team_id=team_id, approval_id=approval_id))


async def approval_get(request: GatewayRequest, approval_id: str) -> GatewayResponse:
    """``GET /v1/approvals/{id}``: the SDK's poll. With ``?wait=N`` it answers as soon as the
    approval leaves 'pending' (or after N seconds, still pending).

    A long-poll wakes when the approval changes (``runtime.waiters``: the change notice, or the
    waiters' own look at the database every ``APPROVAL_WAIT_RECHECK_SECONDS``, so it does not
    depend on Redis), and at the approval's deadline, where it settles it itself."""
    principal = await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
    approval_uuid = parse_uuid_or_404(approval_id, what="approval")
    wait = wait_seconds(request.query("wait"))
    if wait == 0.0:
        approval = await run_in_db_thread(_current, principal.team_id, approval_uuid)
        return json_response(approval_output(approval))
    deadline = time.monotonic() + wait
    overdue = False
    with approval_change_waiter(approval_uuid) as changed:
        while True:
            approval = await run_in_db_thread(_current, principal.team_id, approval_uuid)
            remaining = deadline - time.monotonic()
            if approval.status != Approval.Status.PENDING or remaining <= 0:
                # The key may have been revoked while this waited: answer as a new request would.
                await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
                return json_response(approval_output(approval))
            until_due = (approval.expires_at - timezone.now()).total_seconds()
            # Look again just past the deadline (that look settles it). A deadline that stays
            # past although settled (clocks of two hosts apart) is looked at once per recheck
            # interval, not spun on.
            if until_due > 0:
                timeout, overdue = until_due + 0.01, False
            else:
                timeout = settings.APPROVAL_WAIT_RECHECK_SECONDS if overdue else 0.01
                overdue = True
            try:
                await asyncio.wait_for(changed.wait(), timeout=min(remaining, timeout))
            except TimeoutError:
                pass
            changed.clear()
