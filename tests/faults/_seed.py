"""Migrate and seed a fault test's own database: ``python -m tests.faults._seed`` with DATABASE_URL set.

Seeds the demo team (``manage.py seed_demo``: alice approves in ``compliance``) with the team's
API key in VETO_DEMO_API_KEY and alice's own key in VETO_DEMO_APPROVER_API_KEY (approvals are
decided by people), then publishes ``fault_rules``: allow, deny, and require approval with a
deadline of VETO_FAULT_APPROVAL_TIMEOUT seconds.
"""

from __future__ import annotations

import os

TEAM = "demo"
APPROVER = "alice"
RESOLVE = ("runtime", "approvals:resolve")


def fault_rules(approval_timeout_seconds: int) -> str:
    return (
        "rules:\n"
        "  - {name: pii, tool: run_data_export, when: 'args.include_pii == true', action: require_approval,"
        f" approvers: [compliance], timeout: {approval_timeout_seconds}s}}\n"
        "  - {name: bucket_allowlist, tool: run_data_export, when: \"!args.bucket.startsWith('internal-')\","
        " action: deny, message: 'Exports restricted to internal-* S3 buckets'}\n"
        # Counted in Redis: decided without it only as settings.fail_mode says (closed: deny).
        "  - {name: sms_rate, tool: send_sms, action: deny,"
        " rate_limits: [{scope: global, window_seconds: 60, max_calls: 1000000}]}\n"
    )


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veto_cloud.settings.base")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from policies.services import rule_set_version_create, rule_set_version_publish
    from tenancy import keys, services
    from tenancy.actor import Actor
    from tenancy.models import ApiKey, Team

    call_command("migrate", interactive=False, verbosity=0)
    call_command("seed_demo", verbosity=0)
    team = Team.objects.get(slug=TEAM)
    approver_key = os.environ["VETO_DEMO_APPROVER_API_KEY"]
    if not ApiKey.objects.filter(key_hash=keys.hash_token(approver_key)).exists():
        # seed_demo makes alice's key where personal keys exist; before them a team key decided.
        create = getattr(services, "personal_api_key_create", None)
        if create is not None:
            user = get_user_model().objects.get(username=APPROVER)
            create(user=user, team=team, name="alice's fault-test key", scopes=RESOLVE, token=approver_key)
        else:
            services.api_key_create(team=team, name="approver key", scopes=RESOLVE, token=approver_key)
    timeout = int(os.environ.get("VETO_FAULT_APPROVAL_TIMEOUT", "3600"))
    rule_set_version_publish(
        version=rule_set_version_create(team=team, source_text=fault_rules(timeout)),
        actor=Actor.process("tests"),
    )


if __name__ == "__main__":
    main()
