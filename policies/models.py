from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from policies.engine.constraints import TOOL_NAME_MAX
from tenancy.models import ApiKey, Team


class RuleSetVersion(models.Model):
    """One immutable version of a team's rule set. Publishing makes it the team's active one."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"
        ARCHIVED = "archived", "Archived"

    class SourceFormat(models.TextChoices):
        YAML = "yaml", "YAML"
        JSON = "json", "JSON"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="rule_set_versions")
    number = models.PositiveIntegerField()
    source_text = models.TextField()
    source_format = models.CharField(max_length=8, choices=SourceFormat.choices)
    # The normalized document (policies.engine.document); what the engine compiles.
    document = models.JSONField()
    checksum = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    is_active = models.BooleanField(default=False)
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Copied so the history still names the author after the user or key is gone.
    author_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["team", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["team", "number"], name="rule_set_version_unique_number"),
            # At most one active version per team, whatever the application does.
            models.UniqueConstraint(
                fields=["team"], condition=Q(is_active=True), name="rule_set_one_active_per_team"
            ),
            models.CheckConstraint(
                condition=~Q(is_active=True) | Q(status="published"), name="rule_set_active_is_published"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.team.slug} v{self.number} ({self.status})"

    @property
    def was_active(self) -> bool:
        """Whether this version was the team's active one at some time (publishing sets
        ``published_at``, and nothing clears it): publishing it again is a rollback, while a
        draft's first publish is a publish, whatever its number."""
        return self.published_at is not None


class RuleSetPublication(models.Model):
    """Each time a version became active: the history of what was enforced when, and by whom.

    Publishing a version that was active before is a rollback; the history says so. A draft's
    first publish is a publish, even when a newer version is active.
    """

    class Kind(models.TextChoices):
        PUBLISH = "publish", "Publish"
        ROLLBACK = "rollback", "Rollback"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="rule_set_publications")
    version = models.ForeignKey(RuleSetVersion, on_delete=models.CASCADE, related_name="publications")
    previous_version = models.ForeignKey(
        RuleSetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Copied so the history still names the actor after the user or key is gone.
    actor_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team", "-created_at"]
        indexes = [models.Index(fields=["team", "-created_at"], name="rule_set_publication_time")]

    def __str__(self) -> str:
        return f"{self.team_id}: {self.kind} v{self.version_id}"


class RegisteredTool(models.Model):
    """A tool signature an SDK registered (``POST /v1/tools/register``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="registered_tools")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    parameters = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="registered_tool_unique_name")]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.name}"


class ToolPolicy(models.Model):
    """A team's per-tool policy (``/v1/policies``), the SDK's whole model: argument constraints
    (which the SDK may check locally), session constraints, rate limits, output rules and, in
    mode ``llm``, exceptions a language model may grant.

    Every field is stored in the SDK's own shape (camelCase keys, see
    ``policies.engine.constraints``), checked when written, and enforced by validate before the
    rule set. ``version`` counts content changes; activation does not change it.
    """

    class Mode(models.TextChoices):
        DETERMINISTIC = "deterministic", "Deterministic"
        LLM = "llm", "LLM"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="tool_policies")
    tool_name = models.CharField(max_length=TOOL_NAME_MAX)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.DETERMINISTIC)
    version = models.PositiveIntegerField(default=1)
    is_active = models.BooleanField(default=True)
    constraints = models.JSONField(default=list)
    output_rules = models.JSONField(null=True, blank=True)
    llm_config = models.JSONField(null=True, blank=True)
    session_constraints = models.JSONField(null=True, blank=True)
    # The tool's own rate limits ([{scope, windowSeconds, maxCalls}]), counted as rule-set ones are.
    rate_limits = models.JSONField(null=True, blank=True)
    # Copied so the history still names who last changed it after the user or key is gone.
    updated_by_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team", "tool_name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "tool_name"], name="tool_policy_unique_tool"),
            models.CheckConstraint(condition=Q(version__gte=1), name="tool_policy_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.team_id}/{self.tool_name} v{self.version}"


class PolicyDraft(models.Model):
    """Proposed Policy IR v1 rules (``/v1/policy-drafts``), typically from an agent.

    Approving one builds a new rule-set version from the active one (same-id rules replaced,
    new ones appended) and publishes it; it is decided once: approved or rejected. On a team
    with ``require_policy_review`` an API key's approval only moves it to ``pending_review``
    for a person to decide.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PENDING_REVIEW = "pending_review", "Pending review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    OPEN_STATUSES = (Status.DRAFT, Status.PENDING_REVIEW)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="policy_drafts")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # The rules as proposed (checked with the rule-set loader when the draft was created).
    rules = models.JSONField(default=list)
    created_by_agent_id = models.CharField(max_length=200, blank=True)
    created_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=200, blank=True)
    # The active version when the draft was proposed; approval merges into the one active then.
    base_version_number = models.PositiveIntegerField(null=True, blank=True)
    # An API key asked for approval on a team that requires a person's review.
    review_requested_by_name = models.CharField(max_length=200, blank=True)
    review_requested_at = models.DateTimeField(null=True, blank=True)
    decided_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_name = models.CharField(max_length=200, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True)
    result_version = models.ForeignKey(
        RuleSetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team", "-created_at"]
        indexes = [models.Index(fields=["team", "status", "-created_at"], name="policy_draft_team_status")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["draft", "pending_review"]) | Q(decided_at__isnull=False),
                name="policy_draft_decided_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.team_id}: {self.name} ({self.status})"
