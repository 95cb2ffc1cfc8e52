"""Who owns what: organizations, teams, members, approver groups and API keys.

Every other app imports tenancy from here. A team is what the SDK calls a
*project*; an API key belongs to exactly one team and sees nothing else.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    # The API key whose call created this organization may administer it (VetoAdmin's
    # create_organization → create_project flow); null for organizations made by people.
    created_by_api_key = models.ForeignKey(
        "tenancy.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Team(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    is_default = models.BooleanField(default=False)
    default_approval_timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    # When on, an API key cannot change the team's rules on its own: approving a policy draft
    # with a key only submits it for a person's review, and publishing a rule-set version
    # takes a person (the browser), not a key.
    require_policy_review = models.BooleanField(default=False)
    # Approvals are decided by the members of the rule's approver groups; when on, the team's
    # admins may decide them too. (An approval naming no group is always the admins'.)
    admins_may_approve = models.BooleanField(default=False)
    # As for organizations: the key that created a project through the API may administer it.
    created_by_api_key = models.ForeignKey(
        "tenancy.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization"], condition=Q(is_default=True), name="team_one_default_per_org"
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="membership_unique_user_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class ApproverGroup(models.Model):
    """People who may decide a team's approvals; rules name groups by slug (``approvers: [compliance]``)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="approver_groups")
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="approver_groups")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]
        constraints = [models.UniqueConstraint(fields=["team", "slug"], name="approver_group_unique_slug")]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.slug}"


class ApiKey(models.Model):
    class Scope(models.TextChoices):
        RUNTIME = "runtime", "Runtime (validate, register, log decisions, poll approvals)"
        DECISIONS_READ = "decisions:read", "Read decisions"
        POLICIES_WRITE = "policies:write", "Write policies and rule sets"
        POLICIES_PUBLISH = "policies:publish", "Publish rule sets"
        APPROVALS_RESOLVE = "approvals:resolve", "Resolve approvals"
        ADMIN = "admin", "Administer the organization (projects, API keys)"
        # API mode (POST /v1/validate) with rules in the body: the caller's rules decide instead
        # of the team's, so a runtime key alone may not do it. Such decisions are recorded as
        # source inline_rules with the rules' hash.
        INLINE_RULES = "rules:inline", "Decide with rules sent in the request (API mode)"
        # The team's webhook endpoints (/v1/webhooks), reads included: their URLs and routing keys
        # are credentials (a Slack incoming-webhook URL posts to the channel). Not a member's.
        WEBHOOKS_MANAGE = "webhooks:manage", "Manage webhooks"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    # The first characters of the token: shown in lists, and the indexed lookup column.
    prefix = models.CharField(max_length=16, db_index=True)
    # SHA-256 of the whole token; the token itself is never stored.
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Set: a personal key, which acts as this person (resolves approvals as them) with at most
    # their rights in ``team``, and only while they are an active member of it. Null: a team's
    # key, which is no person and never resolves an approval. CASCADE, never SET_NULL: a
    # personal key must not outlive its person as a team key.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="personal_api_keys",
    )
    # Where a key came from, for four-eyes (``tenancy.actor.actor_identities``): whoever
    # holds a key can mint more, so every key of one lineage counts as one actor. The key that
    # minted this one (POST /v1/api-keys, a project's first key); null when a person or an
    # operator made it (the page, ``create_api_key``, ``seed_demo``). ``created_by`` is then
    # the minting key's person (its ``user``, else its own ``created_by``).
    created_by_api_key = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="minted_api_keys"
    )
    # The id of the first key of the lineage (the one no key minted); null on that key itself.
    # A plain UUID, not a foreign key, so a lineage stays one when a key in the middle of it is
    # deleted, and finding it is one indexed lookup however long the chain (no walk to bound).
    lineage_root = models.UUIDField(null=True, blank=True, editable=False, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_personal(self) -> bool:
        return self.user_id is not None

    @property
    def lineage(self) -> uuid.UUID:
        """Shared by every key minted from the same first key, directly or not."""
        return self.lineage_root or self.id
