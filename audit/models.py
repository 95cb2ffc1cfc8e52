from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import models
from django.utils import timezone

from tenancy.models import Team

# Who and what made a call, as the SDK says it in the request's context: ``context.<name>``, else
# ``context.custom.<name>`` (the SDK sends ``session_id`` and ``agent_id`` on top and puts what
# the agent adds, such as ``model`` or ``environment``, under ``custom``; the same reading as
# approvals.display.context_value). Copied into columns at insert so the explorer filters on
# 10M rows through indexes instead of JSON paths. Column name -> context key.
CONTEXT_COLUMNS = {
    "model": "model",
    "environment": "environment",
    "agent_id": "agent_id",
    "session_id": "session_id",
}
CONTEXT_COLUMN_LENGTH = 200


def context_column_value(context: Any, key: str) -> str:
    """One ``CONTEXT_COLUMNS`` value of a decision's context ("" when it does not say): a string
    as it is, another JSON value as its JSON text, cut to ``CONTEXT_COLUMN_LENGTH``."""
    if not isinstance(context, Mapping):
        return ""
    value = context.get(key)
    if value in (None, ""):
        custom = context.get("custom")
        value = custom.get(key) if isinstance(custom, Mapping) else None
    if value in (None, ""):
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text[:CONTEXT_COLUMN_LENGTH]


def context_columns(context: Any) -> dict[str, str]:
    """The ``CONTEXT_COLUMNS`` of a decision row, from its context (the writer calls it per row)."""
    return {column: context_column_value(context, key) for column, key in CONTEXT_COLUMNS.items()}


def _explorer_index(column: str | None, name: str) -> models.Index:
    # Team first, then the filtered column, then ``sequence``: the explorer's page is
    # ``WHERE team = %s AND <column> = %s [AND sequence < before] ORDER BY sequence DESC LIMIT 51``,
    # a backward range scan that stops after 51 entries. ``decision`` is included (PostgreSQL
    # only; other databases ignore ``include``) so the counts by outcome are index-only scans.
    # The unfiltered one also carries ``created_at``: a time range is bracketed by sequence
    # (audit.selectors._sequence_bounds) and its counts check the time in the index, not the
    # table (1.5 s -> under 100 ms for a day's counts on the 10M benchmark).
    fields = ["team", column, "sequence"] if column else ["team", "sequence"]
    include = [] if column == "decision" else ["decision"]
    if column is None:
        include.append("created_at")
    return models.Index(fields=fields, name=name, include=include)


class DecisionRecord(models.Model):
    """One governed tool call and what was decided. Written before the answer is sent; never edited.

    Deliberately no foreign keys besides the team: a record must outlive the API key that
    made the call and the approval it raised, and FK checks would cost every insert on the
    hot path. ``approval_id`` and ``api_key_id`` are copies of those ids.
    """

    class Outcome(models.TextChoices):
        ALLOW = "allow", "Allow"
        DENY = "deny", "Deny"
        REQUIRE_APPROVAL = "require_approval", "Require approval"

    class Enforcement(models.TextChoices):
        STRICT = "strict", "Strict"
        LOG = "log", "Log only"
        SHADOW = "shadow", "Shadow"

    class Source(models.TextChoices):
        SERVER = "server", "Server (validate, the team's rules)"
        CLIENT = "client", "Client (SDK local decision)"
        # API mode with rules sent in the request: the caller's rules decided, not the team's.
        INLINE_RULES = "inline_rules", "Server (validate, rules sent inline)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No separate index: every index below starts with team.
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="decisions", db_index=False)
    tool_name = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict)
    context = models.JSONField(default=dict)
    decision = models.CharField(max_length=20, choices=Outcome.choices)
    rule_id = models.CharField(max_length=200, blank=True)
    rule_name = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    severity = models.CharField(max_length=16, blank=True)
    mode = models.CharField(max_length=32, default="deterministic")
    # The rule-set version's operating mode. Under log and shadow the row keeps the real
    # decision while the caller was answered allow: the record shows what strict would do.
    enforcement = models.CharField(max_length=8, choices=Enforcement.choices, default=Enforcement.STRICT)
    source = models.CharField(max_length=16, choices=Source.choices)
    # inline_rules only: SHA-256 (hex) of the rules' canonical JSON (sorted keys, no whitespace,
    # ASCII), so the record says which rules decided. Also in the chained record.
    rules_hash = models.CharField(max_length=64, blank=True, default="")
    latency_ms = models.FloatField(default=0.0)
    # What else decided (a language model's verdict: {"llm": {...}}); null for most decisions.
    metadata = models.JSONField(null=True, blank=True)
    rule_set_version = models.PositiveIntegerField(null=True, blank=True)
    approval_id = models.UUIDField(null=True, blank=True)
    api_key_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # From the context (``context_columns``), filled by the decision writer; "" when not said.
    # Not in the chained record: the context is, and these are read from it.
    model = models.CharField(max_length=CONTEXT_COLUMN_LENGTH, blank=True, default="")
    environment = models.CharField(max_length=CONTEXT_COLUMN_LENGTH, blank=True, default="")
    agent_id = models.CharField(max_length=CONTEXT_COLUMN_LENGTH, blank=True, default="")
    session_id = models.CharField(max_length=CONTEXT_COLUMN_LENGTH, blank=True, default="")
    # The team's chain (audit.chain): a gapless sequence per team, the exact text that was
    # hashed, and the link. Assigned by the decision writer inside the commit.
    sequence = models.BigIntegerField()
    record = models.TextField()
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["team", "sequence"], name="decision_chain_sequence"),
        ]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="decision_team_time"),
            models.Index(fields=["team", "tool_name", "-created_at"], name="decision_team_tool_time"),
            models.Index(fields=["team", "decision", "-created_at"], name="decision_team_outcome_time"),
            # The explorer (audit.selectors.explorer_*): one per filter, see _explorer_index.
            _explorer_index(None, "decision_x_seq_time"),
            _explorer_index("tool_name", "decision_x_tool_seq"),
            # Tool and outcome together (decision is in the key, so nothing to include): their
            # counts read only matching entries, not every outcome of the tool (audit 0011).
            models.Index(
                fields=["team", "tool_name", "decision", "sequence"], name="decision_x_tool_outcome_seq"
            ),
            _explorer_index("decision", "decision_x_outcome_seq"),
            _explorer_index("rule_id", "decision_x_rule_seq"),
            _explorer_index("model", "decision_x_model_seq"),
            _explorer_index("environment", "decision_x_env_seq"),
            _explorer_index("agent_id", "decision_x_agent_seq"),
            _explorer_index("session_id", "decision_x_session_seq"),
            _explorer_index("source", "decision_x_source_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name}: {self.decision}"


class ChainStream(models.TextChoices):
    DECISIONS = "decisions", "Decisions"
    EVENTS = "events", "Approval actions and policy changes"


class ChainHead(models.Model):
    """The last entry of one team's chain. Appenders lock this row, so appends to one team's
    chain are ordered while teams never wait for each other."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    stream = models.CharField(max_length=16, choices=ChainStream.choices)
    sequence = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "stream"], name="chain_head_one_per_stream")]

    def __str__(self) -> str:
        return f"{self.team_id}/{self.stream} #{self.sequence}"


class AuditEvent(models.Model):
    """Who did what to the team's governance, when and from where: approval actions, rule-set
    publishes and per-tool policy changes, chained like decisions in their own stream. Appended,
    never edited."""

    class Kind(models.TextChoices):
        APPROVAL_ACTION = "approval.action", "Approval action"
        RULE_SET_PUBLISHED = "rule_set.published", "Rule set published"
        # A per-tool policy created, updated, deleted, activated or deactivated: it takes effect
        # at once, so for an auditor it is a publish too.
        TOOL_POLICY_CHANGED = "tool_policy.changed", "Tool policy changed"
        # A team's members, roles, approver groups, options or members' keys changed (team_settings).
        TEAM_CHANGED = "team.changed", "Team changed"
        # A webhook endpoint disabled after failing (webhooks.delivery.endpoint_disable).
        WEBHOOK_FAILED = "webhook.failed", "Webhook endpoint disabled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+", db_index=False)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    actor_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    sequence = models.BigIntegerField()
    record = models.TextField()
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["team", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["team", "sequence"], name="audit_event_chain_sequence")
        ]

    def __str__(self) -> str:
        return f"{self.team_id} #{self.sequence}: {self.kind}"


class Checkpoint(models.Model):
    """A signed statement of a chain's head at a moment: with it, truncating the tail or
    rewriting the whole chain is detectable too. Ed25519; the key lives outside the database."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    stream = models.CharField(max_length=16, choices=ChainStream.choices)
    sequence = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField(default=timezone.now)
    # The signed bytes are canonical({"team", "stream", "sequence", "hash", "signed_at"}).
    payload = models.TextField()
    signature = models.CharField(max_length=128)  # hex
    public_key = models.CharField(max_length=64)  # hex, raw Ed25519 public key

    class Meta:
        ordering = ["team", "stream", "sequence"]
        indexes = [models.Index(fields=["team", "stream", "-sequence"], name="checkpoint_latest")]

    def __str__(self) -> str:
        return f"{self.team_id}/{self.stream} #{self.sequence}"


class Verification(models.Model):
    """One run of the chain verifier (``verify_audit``, the audit page): what it found."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    stream = models.CharField(max_length=16, choices=ChainStream.choices)
    ran_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    count = models.BigIntegerField()
    head_sequence = models.BigIntegerField(null=True, blank=True)
    head_hash = models.CharField(max_length=64, blank=True)
    broken_at = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True)
    seconds = models.FloatField()

    class Meta:
        ordering = ["-ran_at"]
        indexes = [models.Index(fields=["team", "stream", "-ran_at"], name="verification_latest")]

    def __str__(self) -> str:
        return f"{self.team_id}/{self.stream} {'OK' if self.ok else 'BROKEN'} at {self.ran_at}"


class ChainArchive(models.Model):
    """Where the start of a chain went: entries up to ``through_sequence`` were written to an
    archive file (its SHA-256 kept here) and removed. The chain left behind is anchored on
    ``through_hash``, so verification still proves it, and the file proves the rest."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    stream = models.CharField(max_length=16, choices=ChainStream.choices)
    through_sequence = models.BigIntegerField()
    through_hash = models.CharField(max_length=64)
    archived_at = models.DateTimeField(default=timezone.now)
    location = models.TextField()
    file_sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["team", "stream", "-through_sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "stream", "through_sequence"], name="chain_archive_once_per_cut"
            )
        ]

    def __str__(self) -> str:
        return f"{self.team_id}/{self.stream} through #{self.through_sequence}"
