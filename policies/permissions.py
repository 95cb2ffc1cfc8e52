"""Who may publish a team's rule set, decide its drafts and change its tool policies from the
dashboard.

Publishing changes what every agent of the team is allowed to do, so it takes a team admin
(or staff), and never the version's own author: a second person has to have read it
(four-eyes). Rolling back is publishing an older version, under the same rule. A tool
policy takes effect the moment it is written, so changing one takes a team admin too.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User

from common.errors import PermissionDenied
from policies.models import RuleSetVersion
from tenancy.models import ApiKey
from tenancy.principal import ApiKeyPrincipal
from tenancy.selectors import TeamAccess

# Deactivating a tool policy, and every other change that loosens one (deleting it, widening a
# constraint, ...: ``policies.engine.loosening``), takes this scope; ``policies:write`` only
# creates and tightens. On a team with ``require_policy_review`` no key may change a policy.
LOOSEN_TOOL_POLICY_SCOPE = ApiKey.Scope.POLICIES_PUBLISH


def api_key_may_loosen_tool_policies(principal: ApiKeyPrincipal) -> bool:
    return principal.has_scope(LOOSEN_TOOL_POLICY_SCOPE)


def rule_set_publish_refusal(
    *, access: TeamAccess, user: User | AnonymousUser, version: RuleSetVersion
) -> str | None:
    """Why ``user`` may not publish ``version``, or None when they may."""
    if not access.is_admin:
        return "Only team admins can publish or roll back rule sets."
    if version.author_user_id is not None and version.author_user_id == user.pk:
        return (
            f"You wrote version {version.number}, so someone else has to publish it "
            "(four-eyes: another team admin reviews and publishes)."
        )
    return None


def ensure_may_publish_rule_set(
    *, access: TeamAccess, user: User | AnonymousUser, version: RuleSetVersion
) -> None:
    refusal = rule_set_publish_refusal(access=access, user=user, version=version)
    if refusal is not None:
        raise PermissionDenied(refusal, code="publish_not_allowed")


def ensure_may_decide_policy_draft(*, access: TeamAccess) -> None:
    """Approving a draft publishes a version, so deciding drafts takes a team admin (or staff);
    the service itself refuses the draft's own proposer (four-eyes)."""
    if not access.is_admin:
        raise PermissionDenied(
            "Only team admins can approve or reject policy drafts.", code="draft_decision_not_allowed"
        )


def ensure_may_manage_tool_policies(*, access: TeamAccess) -> None:
    """Creating, replacing, (de)activating or deleting a tool policy changes what agents may do
    at once (no publish step), so it takes a team admin (or staff), as publishing does."""
    if not access.is_admin:
        raise PermissionDenied(
            "Only team admins can create, change or delete tool policies.",
            code="tool_policy_change_not_allowed",
        )
