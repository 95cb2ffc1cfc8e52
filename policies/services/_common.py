"""What the policy services share: the name the trail records for a person or key, the refusal
of a document with every problem listed, and the refusal of an API key on a team that requires
a person's review."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import User

from common.errors import InvalidInput, PermissionDenied
from policies.engine import RuleSetError
from tenancy.models import ApiKey, Team


def author_name(user: User | None, api_key_id: uuid.UUID | None) -> str:
    if user is not None:
        return user.get_username()
    if api_key_id is not None:
        key = ApiKey.objects.filter(pk=api_key_id).values_list("name", "prefix").first()
        if key is not None:
            return f"API key {key[0]} ({key[1]}…)"
    return ""


class HumanReviewRequired(PermissionDenied):
    """The team requires a person to review rule changes; an API key alone cannot make them."""

    code = "human_review_required"


def refuse_api_key_on_reviewed_team(
    *, team_id: uuid.UUID, what: str, instead: str = "a team member approves it in the browser"
) -> None:
    if Team.objects.filter(pk=team_id, require_policy_review=True).exists():
        raise HumanReviewRequired(
            f"this team requires a person's review: an API key cannot {what}; {instead}"
        )


def invalid(exc: RuleSetError, *, what: str, code: str) -> InvalidInput:
    errors = [p.as_dict() for p in exc.problems]
    return InvalidInput(
        f"the {what} has {len(errors)} problem(s): {exc}",
        details={"errors": errors},
        code=code,
        extra={"errors": errors},
    )
