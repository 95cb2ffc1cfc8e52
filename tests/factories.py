"""factory_boy factories for tenancy, policies and approvals."""

from __future__ import annotations

import uuid
from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.utils import timezone

from approvals.models import Approval
from audit.models import DecisionRecord, context_columns
from policies.models import PolicyDraft, ToolPolicy
from policies.services import policy_draft_create, rule_set_version_create, rule_set_version_publish
from runtime.writer import insert_decisions
from tenancy.actor import Actor
from tenancy.models import ApiKey, ApproverGroup, Membership, Organization, Team
from tenancy.principal import ApiKeyPrincipal
from tenancy.services import ALL_SCOPES, api_key_create, personal_api_key_create

# The actor of a service call a test makes as nobody in particular (setting data up).
BY_TESTS = Actor.process("tests")


def as_key(api_key: ApiKey, *, remote_addr: str | None = None) -> Actor:
    """An API key as the actor of a service call: its principal as the API's authentication
    builds it (the scopes it was given)."""
    principal = ApiKeyPrincipal(
        key_id=api_key.id,
        key_prefix=api_key.prefix,
        team_id=api_key.team_id,
        team_slug=api_key.team.slug,
        organization_id=api_key.team.organization_id,
        scopes=frozenset(api_key.scopes),
        user_id=api_key.user_id,
        key_name=api_key.name,
    )
    return Actor.key(principal, remote_addr=remote_addr)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.invalid")
    password = factory.django.Password("correct-horse-battery")


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class ApproverGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApproverGroup

    team = factory.SubFactory(TeamFactory)
    slug = factory.Sequence(lambda n: f"group-{n}")
    name = factory.LazyAttribute(lambda g: g.slug.title())


class ApprovalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Approval

    team = factory.SubFactory(TeamFactory)
    tool_name = "run_data_export"
    arguments = factory.LazyFunction(lambda: {"include_pii": True})
    rule_id = "block_pii_exports"
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=1))


def api_key_for(team: Team, *, scopes: tuple[str, ...] = ALL_SCOPES, name: str = "test key") -> str:
    """A new key for ``team``; returns the token (the only time it exists in clear)."""
    _, token = api_key_create(team=team, name=name, scopes=scopes)
    return token


PERSONAL_SCOPES: tuple[str, ...] = ("decisions:read", "approvals:resolve")


def personal_api_key_for(
    user, team: Team, *, scopes: tuple[str, ...] = PERSONAL_SCOPES, role: str = "member", name: str = "my key"
) -> str:
    """A personal key of ``user`` in ``team`` (made a member with ``role`` if they are not one);
    returns the token. The only kind of key that resolves approvals, as its user."""
    Membership.objects.get_or_create(user=user, team=team, defaults={"role": role})
    _, token = personal_api_key_create(user=user, team=team, name=name, scopes=scopes)
    return token


def publish_rules(team: Team, source: str):
    """Create and publish a rule-set version from YAML; returns the version."""
    version = rule_set_version_create(team=team, source_text=source)
    return rule_set_version_publish(version=version, actor=BY_TESTS).version


class ToolPolicyFactory(factory.django.DjangoModelFactory):
    """A per-tool policy stored as the API stores it (use the service to exercise validation)."""

    class Meta:
        model = ToolPolicy

    team = factory.SubFactory(TeamFactory)
    tool_name = factory.Sequence(lambda n: f"tool_{n}")
    constraints = factory.LazyFunction(lambda: [{"argumentName": "amount", "enabled": True, "maximum": 1000}])


def policy_draft_for(
    team: Team, rules: list[dict], *, user=None, name: str = "proposed rules"
) -> PolicyDraft:
    """A policy draft proposed through the service (its rules are checked as the API checks them)."""
    actor = Actor.person(user) if user is not None else None
    return policy_draft_create(team_id=team.id, name=name, rules=rules, actor=actor)


def set_live_server_password(user, password: str) -> None:
    """Give ``user`` a password the live server (production hashers, not the test settings' MD5)
    accepts; few PBKDF2 iterations keep logging in fast, and the server upgrades the hash."""
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(password, hasher.salt(), iterations=1000)
    user.save(update_fields=["password"])


def decision_row(team_id: uuid.UUID, **fields: object) -> dict[str, object]:
    """A decision row as the writer takes it (``runtime.writer.DecisionRow``), with ``fields`` over defaults."""
    row: dict[str, object] = {
        "id": uuid.uuid4(),
        "team_id": team_id,
        "tool_name": "tool",
        "arguments": {},
        "context": {},
        "decision": DecisionRecord.Outcome.ALLOW,
        "rule_id": "",
        "rule_name": "",
        "reason": "",
        "severity": "",
        "mode": "deterministic",
        "enforcement": DecisionRecord.Enforcement.STRICT,
        "source": DecisionRecord.Source.SERVER,
        "latency_ms": 0.0,
        "rule_set_version": None,
        "approval_id": None,
        "api_key_id": None,
        "created_at": timezone.now(),
        "rules_hash": "",
    }
    row.update(fields)
    # The explorer's columns, read from the context as the runtime does (unless given).
    for column, value in context_columns(row["context"]).items():
        row.setdefault(column, value)
    return row


def record_decision(team: Team, **fields: object) -> DecisionRecord:
    """A decision recorded the way the server records one: chained into the team's audit chain
    (``runtime.writer.insert_decisions``), so verification sees exactly what production writes."""
    row = decision_row(team.id, **fields)
    insert_decisions([row], [])
    return DecisionRecord.objects.get(pk=row["id"])
