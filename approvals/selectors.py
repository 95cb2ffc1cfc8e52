from __future__ import annotations

import uuid

from approvals.models import Approval
from common.errors import NotFound


def approval_get_for_team(*, team_id: uuid.UUID, approval_id: uuid.UUID) -> Approval:
    """The team's approval, or NotFound (also for another team's id: ids are not a side channel)."""
    try:
        return Approval.objects.get(pk=approval_id, team_id=team_id)
    except Approval.DoesNotExist as exc:
        raise NotFound("approval not found") from exc
