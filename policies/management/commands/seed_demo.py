from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from common.errors import ApplicationError
from policies.models import RuleSetVersion
from policies.services import rule_set_version_create, rule_set_version_publish
from tenancy import keys
from tenancy.actor import Actor
from tenancy.models import ApiKey, Membership, Organization, Team
from tenancy.services import (
    ALL_SCOPES,
    api_key_create,
    approver_group_ensure,
    membership_ensure,
    organization_create,
    personal_api_key_create,
    team_create,
)

DEMO_RULES = Path(__file__).resolve().parents[3] / "policies" / "fixtures" / "demo_rules.yaml"
# The demo shows a quorum: a large export (not PII, to an internal bucket: the rules above it
# decide those) waits for two people of compliance, alice and bob. Appended to the integration
# pages' rule set (policies/fixtures/demo_rules.yaml, which the engine's tests read as it is).
QUORUM_RULE = "large_export_two_approvals"
QUORUM_RULE_SOURCE = f"""\
  # seed_demo: two people of compliance must approve a large export (a quorum of two).
  - name: {QUORUM_RULE}
    tool: run_data_export
    when: args.row_count > 100000
    action: require_approval
    approvers: [compliance]
    min_approvals: 2
    timeout: 24h
"""
DEMO_KEY_NAME = "demo key"
# The demo's approver resolves through the API (VetoAdmin.resolve_approval) with a key of her
# own: the team's demo key is no person, and approvals are decided by people. bob is compliance's
# second approver, so that the quorum rule can be approved by two people.
DEMO_APPROVER = "alice"
DEMO_APPROVER_KEY_NAME = "alice's demo key"
GROUPS = {
    "compliance": "Compliance",
    "privacy-office": "Privacy office",
    "engineering-leads": "Engineering leads",
}
USERS: dict[str, dict[str, Any]] = {
    "admin": {"groups": [], "role": Membership.Role.ADMIN, "superuser": True},
    "alice": {"groups": ["compliance", "privacy-office"], "role": Membership.Role.MEMBER, "superuser": False},
    "bob": {
        "groups": ["compliance", "engineering-leads"],
        "role": Membership.Role.MEMBER,
        "superuser": False,
    },
    "carol": {"groups": [], "role": Membership.Role.MEMBER, "superuser": False},
    # A team admin who is not a superuser: reviews and publishes the others' rule-set versions
    # on the policies page (nobody may publish a version they wrote themselves).
    "dana": {"groups": [], "role": Membership.Role.ADMIN, "superuser": False},
}


class Command(BaseCommand):
    help = (
        "Create the demo team, approver groups, users, the team's API key and alice's personal key, and publish the demo rule set "
        "as version 1. Safe to run again: it changes nothing that already exists, except the "
        "passwords when VETO_DEMO_PASSWORD is set."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--team",
            metavar="SLUG",
            help="seed into this existing team instead of creating the team 'demo' (a benchmark's "
            "loaded team, benchmarks/scale_10m.py)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password_from_env = os.environ.get("VETO_DEMO_PASSWORD") or None
        key_from_env = os.environ.get("VETO_DEMO_API_KEY") or None
        approver_key_from_env = os.environ.get("VETO_DEMO_APPROVER_API_KEY") or None
        for variable, value in (
            ("VETO_DEMO_API_KEY", key_from_env),
            ("VETO_DEMO_APPROVER_API_KEY", approver_key_from_env),
        ):
            if value is not None and len(value) < keys.MIN_TOKEN_LENGTH:
                raise CommandError(f"{variable} must be at least {keys.MIN_TOKEN_LENGTH} characters")
        try:
            with transaction.atomic():
                team = self._team(options.get("team"))
                groups = {
                    slug: approver_group_ensure(team=team, slug=slug, name=name)
                    for slug, name in GROUPS.items()
                }
                password_note = self._users(team, groups, password_from_env)
                key_note = self._api_key(team, key_from_env)
                approver_key_note = self._approver_key(team, approver_key_from_env)
                rules_note = self._rules(team)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc

        self.stdout.write(f"Team: {team.slug} (organization {team.organization.slug})")
        self.stdout.write(
            f"Users: {', '.join(USERS)} (admin is a superuser; dana is a team admin who publishes policies; "
            f"alice and bob approve for compliance, two of them a large export)"
        )
        self.stdout.write(f"Password: {password_note}")
        self.stdout.write(f"API key: {key_note}")
        self.stdout.write(f"Approver key ({DEMO_APPROVER}): {approver_key_note}")
        self.stdout.write(f"Rule set: {rules_note}")

    def _team(self, slug: str | None = None) -> Team:
        if slug:
            found = Team.objects.select_related("organization").filter(slug=slug).first()
            if found is None:
                raise CommandError(f"no team {slug!r}")
            return found
        team = Team.objects.select_related("organization").filter(slug="demo").first()
        if team is not None:
            return team
        organization = Organization.objects.filter(slug="demo").first() or organization_create(
            name="Demo Organization", slug="demo"
        )
        return team_create(organization=organization, name="Demo", slug="demo")

    def _users(self, team: Team, groups: dict[str, Any], password_from_env: str | None) -> str:
        user_model = get_user_model()
        generated: str | None = None
        generated_for: list[str] = []
        for username, spec in USERS.items():
            user = user_model.objects.filter(username=username).first()
            created = user is None
            if created:
                user = user_model(username=username, email=f"{username}@demo.invalid")
            assert user is not None
            user.is_superuser = user.is_staff = bool(spec["superuser"])
            if password_from_env is not None:
                user.set_password(password_from_env)
            elif created:
                generated = generated or secrets.token_urlsafe(12)
                user.set_password(generated)
                generated_for.append(username)
            user.save()
            membership_ensure(user=user, team=team, role=spec["role"])
            for slug in spec["groups"]:
                groups[slug].members.add(user)
        if password_from_env is not None:
            return "from VETO_DEMO_PASSWORD"
        if generated is not None and len(generated_for) < len(USERS):
            # A demo seeded before some users existed: only the new ones get this password.
            return f"{generated}  for {', '.join(generated_for)} (generated; shown only now; the others' are unchanged)"
        if generated is not None:
            return f"{generated}  (generated; shown only now)"
        return "unchanged (set VETO_DEMO_PASSWORD to reset it)"

    def _api_key(self, team: Team, key_from_env: str | None) -> str:
        if key_from_env is not None:
            if not ApiKey.objects.filter(key_hash=keys.hash_token(key_from_env)).exists():
                api_key_create(team=team, name=DEMO_KEY_NAME, scopes=ALL_SCOPES, token=key_from_env)
            return "from VETO_DEMO_API_KEY"
        if ApiKey.objects.filter(team=team, name=DEMO_KEY_NAME, revoked_at__isnull=True).exists():
            return "exists (keys are shown only when created; set VETO_DEMO_API_KEY to choose one)"
        _, token = api_key_create(team=team, name=DEMO_KEY_NAME, scopes=ALL_SCOPES)
        return f"{token}  (generated; shown only now)"

    def _approver_key(self, team: Team, key_from_env: str | None) -> str:
        approver = get_user_model().objects.get(username=DEMO_APPROVER)
        if key_from_env is not None:
            if not ApiKey.objects.filter(key_hash=keys.hash_token(key_from_env)).exists():
                personal_api_key_create(
                    user=approver, team=team, name=DEMO_APPROVER_KEY_NAME, token=key_from_env
                )
            return "from VETO_DEMO_APPROVER_API_KEY"
        if ApiKey.objects.filter(user=approver, team=team, revoked_at__isnull=True).exists():
            return "exists (set VETO_DEMO_APPROVER_API_KEY to choose one)"
        _, token = personal_api_key_create(user=approver, team=team, name=DEMO_APPROVER_KEY_NAME)
        return f"{token}  (generated; shown only now)"

    def _rules(self, team: Team) -> str:
        actor = Actor.process("seed_demo")
        source = demo_rules_source()
        if RuleSetVersion.objects.filter(team=team).exists():
            active = RuleSetVersion.objects.filter(team=team, is_active=True).first()
            if active is None:
                return "versions exist, none active"
            if active.author_name != "seed_demo" or active.source_text != DEMO_RULES.read_text():
                return f"version {active.number} is active"
            # A demo an earlier seed_demo published, untouched since: it gets the quorum rule.
        version = rule_set_version_create(
            team=team, source_text=source, content_type="application/yaml", author=actor
        )
        rule_set_version_publish(version=version, actor=actor)
        return f"published the demo rule set as version {version.number}"


def demo_rules_source() -> str:
    """The rule set the demo publishes: the integration pages' rules and the quorum rule."""
    return DEMO_RULES.read_text().rstrip("\n") + "\n" + QUORUM_RULE_SOURCE
