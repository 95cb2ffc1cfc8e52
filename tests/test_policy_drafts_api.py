"""Policy drafts through the published SDK's ``VetoAdmin`` against the live ASGI server: an
agent proposes rules, an approval merges them into the active rule set and publishes it once,
a rejection records why, and a team that requires review keeps API keys from doing it alone."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from veto.admin import VetoAdmin, VetoAdminError
from veto.cloud.client import VetoCloudClient, VetoCloudConfig

from common.errors import ApplicationError
from policies.models import PolicyDraft, RuleSetPublication, RuleSetVersion
from policies.permissions import FourEyesRequired
from policies.services import policy_draft_approve
from tenancy.actor import Actor
from tenancy.models import ApiKey, Membership, Team
from tests.factories import TeamFactory, UserFactory, api_key_for, as_key, policy_draft_for, publish_rules

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

BASE = """\
rules:
  - name: bucket_allowlist
    tool: run_data_export
    when: "!args.bucket.startsWith('internal-')"
    action: deny
  - name: no_sms_at_night
    tool: send_sms
    when: context.local_hour < 9
    action: deny
settings:
  default_action: allow
fixtures:
  - suite: exports
    tests:
      - {id: public, tool: run_data_export, arguments: {bucket: s3://x}, expect: {decision: deny}}
"""
# Replaces no_sms_at_night (same id), adds cap_transfers (new id).
PROPOSED = [
    {
        "id": "no_sms_at_night",
        "name": "no_sms_at_night",
        "action": "require_approval",
        "tools": ["send_sms"],
        "conditions": [{"field": "context.local_hour", "operator": "less_than", "value": 7}],
    },
    {
        "id": "cap_transfers",
        "name": "Cap transfers",
        "action": "block",
        "severity": "high",
        "tools": ["transfer_funds"],
        "conditions": [{"field": "arguments.amount", "operator": "greater_than", "value": 1000}],
    },
]


@pytest.fixture
def team() -> Team:
    team = TeamFactory()
    publish_rules(team, BASE)
    return team


@pytest.fixture
def admin(asgi_server, team):
    default_key = api_key_for(team)
    return lambda key=None: VetoAdmin(apiKey=key or default_key, baseUrl=asgi_server.url)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def outcome(call: Any) -> Any:
    """The call's result, or the HTTP status it failed with."""
    try:
        return await call
    except VetoAdminError as exc:
        return exc.status_code


def test_sdk_admin_draft__create_get_list__proposed_against_the_active_version(admin, team):
    async def scenario() -> dict[str, Any]:
        async with admin() as client:
            created = await client.create_policy_draft(
                {
                    "name": "Tighter SMS",
                    "description": "from the agent",
                    "rules": PROPOSED,
                    "createdByAgentId": "a-7",
                }
            )
            fetched = await client.get_policy_draft(created.id)
            drafts = await client.list_policy_drafts()
            by_agent = await client.list_policy_drafts({"createdByAgentId": "a-7", "status": "draft"})
            approved_only = await client.list_policy_drafts({"status": "approved"})
        return locals()

    found = run(scenario())
    created = found["created"]
    assert (created.name, created.description, created.status, created.createdByAgentId) == (
        "Tighter SMS",
        "from the agent",
        "draft",
        "a-7",
    )
    assert created.rules == PROPOSED
    assert created.model_dump()["baseVersion"] == 1
    assert found["fetched"].model_dump() == created.model_dump()
    assert [d.id for d in found["drafts"]] == [d.id for d in found["by_agent"]] == [created.id]
    assert found["approved_only"] == []
    assert RuleSetVersion.objects.filter(team=team).count() == 1  # proposing changes nothing


def test_sdk_admin_draft__approve__merged_version_published_once_and_validate_follows(
    admin, team, asgi_server
):
    key = api_key_for(team)
    agent = api_key_for(team, name="agent")

    async def scenario() -> dict[str, Any]:
        async with admin(agent) as proposer:
            draft = await proposer.create_policy_draft({"name": "Tighter SMS", "rules": PROPOSED})
        async with admin(key) as client:
            approved = await client.approve_policy_draft(draft.id)
            again = await outcome(client.approve_policy_draft(draft.id))
            reject_after = await outcome(client.reject_policy_draft(draft.id, "too late"))
        runtime = VetoCloudClient(VetoCloudConfig(api_key=key, base_url=asgi_server.url, retries=0))
        try:
            transfer = await runtime.validate("transfer_funds", {"amount": 5000})
            export = await runtime.validate("run_data_export", {"bucket": "s3://public"})
        finally:
            await runtime.close()
        return locals()

    found = run(scenario())
    approved = found["approved"]
    assert approved.status == "approved"
    assert approved.model_dump()["ruleSetVersion"] == 2
    assert approved.model_dump()["decidedBy"].startswith("API key test key")
    assert (found["again"], found["reject_after"]) == (409, 409)
    # The new version: the active rules, same id replaced where it stood, new id appended,
    # and everything else of the base kept (settings, fixtures) ...
    version = RuleSetVersion.objects.get(team=team, number=2)
    assert version.is_active
    rules = {r["id"]: r for r in version.document["rules"]}
    assert list(rules) == ["bucket_allowlist", "no_sms_at_night", "cap_transfers"]
    assert rules["no_sms_at_night"]["action"] == "require_approval"
    assert [t["id"] for t in version.document["fixtures"][0]["tests"]] == ["public"]
    assert version.source_text.startswith(f"# Policy draft {approved.id} approved on top of version 1")
    assert "when: '!args.bucket.startsWith(''internal-'')'" in version.source_text  # short form kept
    assert RuleSetPublication.objects.filter(team=team, version=version).count() == 1
    # ... and it decides at once
    assert (found["transfer"].decision, found["transfer"].metadata["rule_id"]) == ("deny", "cap_transfers")
    assert found["export"].decision == "deny"


def test_sdk_admin_draft__approve_with_failing_fixtures__422_and_nothing_changes(admin, team):
    breaks_fixture = [{"id": "bucket_allowlist", "name": "bucket_allowlist", "action": "allow"}]
    agent = api_key_for(team, name="agent")

    async def scenario() -> tuple[Any, Any]:
        async with admin(agent) as proposer:
            draft = await proposer.create_policy_draft({"name": "Open exports", "rules": breaks_fixture})
        async with admin() as client:
            return await outcome(client.approve_policy_draft(draft.id)), await client.get_policy_draft(
                draft.id
            )

    status, draft = run(scenario())
    assert status == 422
    assert draft.status == "draft"
    assert list(RuleSetVersion.objects.filter(team=team).values_list("number", "is_active")) == [(1, True)]


def test_sdk_admin_draft__reject__records_the_reason_and_who_and_closes_it(admin, team):
    async def scenario() -> tuple[Any, Any, Any]:
        async with admin() as client:
            draft = await client.create_policy_draft({"name": "Tighter SMS", "rules": PROPOSED})
            rejected = await client.reject_policy_draft(draft.id, "we text customers at night on purpose")
            without_reason = await client.reject_policy_draft(
                (await client.create_policy_draft({"name": "Other", "rules": PROPOSED})).id
            )
            return rejected, without_reason, await outcome(client.approve_policy_draft(draft.id))

    rejected, without_reason, approve_after = run(scenario())
    assert rejected.status == "rejected"
    assert rejected.model_dump()["rejectionReason"] == "we text customers at night on purpose"
    assert rejected.model_dump()["decidedBy"].startswith("API key")
    assert (without_reason.status, without_reason.model_dump()["rejectionReason"]) == ("rejected", None)
    assert approve_after == 409
    assert RuleSetVersion.objects.filter(team=team).count() == 1


def test_api_draft__invalid_rules__400_with_every_path_and_nothing_stored(asgi_server, team):
    body = {
        "name": "broken",
        "rules": [
            {"id": "a", "name": "a", "action": "explode"},
            {
                "id": "b",
                "name": "b",
                "action": "block",
                "conditions": [{"field": "x", "operator": "nope", "value": 1}],
            },
            "not a rule",
        ],
    }
    response = httpx.post(
        f"{asgi_server.url}/v1/policy-drafts",
        json=body,
        headers={"X-Veto-API-Key": api_key_for(team)},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_rule_set"
    assert [e["path"] for e in response.json()["errors"]] == [
        "rules[0].action",
        "rules[1].conditions[0].operator",
        "rules[2]",
    ]
    assert not PolicyDraft.objects.exists()


def test_sdk_admin_draft__concurrent_approvals__exactly_one_wins(asgi_server, team):
    # Given one draft and two API clients approving it at the same moment
    draft = policy_draft_for(team, PROPOSED)
    key = api_key_for(team)
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def approve() -> None:
        barrier.wait()
        response = httpx.post(
            f"{asgi_server.url}/v1/policy-drafts/{draft.id}/approve",
            headers={"X-Veto-API-Key": key},
            timeout=30,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=approve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    # Then one approval published a version, the other was told it is already decided
    assert sorted(statuses) == [200, 409]
    assert RuleSetVersion.objects.filter(team=team).count() == 2
    assert RuleSetPublication.objects.filter(team=team).count() == 2  # the base's and the draft's


def test_sdk_admin_draft__scopes__write_proposes_only_publish_decides(asgi_server, team):
    writer = api_key_for(team, scopes=("runtime", "policies:write"))
    runtime_only = api_key_for(team, scopes=("runtime",))

    async def scenario() -> list[Any]:
        async with VetoAdmin(apiKey=runtime_only, baseUrl=asgi_server.url) as client:
            refused_create = await outcome(client.create_policy_draft({"name": "x", "rules": PROPOSED}))
        async with VetoAdmin(apiKey=writer, baseUrl=asgi_server.url) as client:
            draft = await client.create_policy_draft({"name": "x", "rules": PROPOSED})
            refused_approve = await outcome(client.approve_policy_draft(draft.id))
            refused_reject = await outcome(client.reject_policy_draft(draft.id, "no"))
        return [refused_create, refused_approve, refused_reject]

    assert run(scenario()) == [403, 403, 403]
    assert PolicyDraft.objects.get().status == "draft"


def test_sdk_admin_draft__another_teams_draft__404(asgi_server, team):
    draft = policy_draft_for(team, PROPOSED)
    stranger = api_key_for(TeamFactory())

    async def scenario() -> list[Any]:
        async with VetoAdmin(apiKey=stranger, baseUrl=asgi_server.url) as client:
            return [
                await outcome(client.get_policy_draft(str(draft.id))),
                await outcome(client.approve_policy_draft(str(draft.id))),
                await outcome(client.reject_policy_draft(str(draft.id), "no")),
                await outcome(client.get_policy_draft("not-a-uuid")),
                len(await client.list_policy_drafts()),
            ]

    assert run(scenario()) == [404, 404, 404, 404, 0]


def test_review_required__api_key_approval_submits_for_review_and_cannot_publish(admin, team, asgi_server):
    # Given a team that requires a person's review of rule changes
    Team.objects.filter(pk=team.pk).update(require_policy_review=True)
    key = api_key_for(team)
    agent = api_key_for(team, name="agent")

    async def scenario() -> dict[str, Any]:
        async with admin(agent) as proposer:
            draft = await proposer.create_policy_draft({"name": "Tighter SMS", "rules": PROPOSED})
        async with admin(key) as client:
            submitted = await client.approve_policy_draft(draft.id)
            again = await outcome(client.approve_policy_draft(draft.id))
        return locals()

    found = run(scenario())
    # When an API key approves, the draft only moves to pending_review; a second try is refused
    assert found["submitted"].status == "pending_review"
    assert found["submitted"].model_dump()["reviewRequestedBy"].startswith("API key")
    assert found["again"] == 403
    headers = {"X-Veto-API-Key": key}
    again = httpx.post(f"{asgi_server.url}/v1/policy-drafts/{found['draft'].id}/approve", headers=headers)
    assert again.json()["error"]["code"] == "human_review_required"
    # And publishing a rule-set version with a key is refused with the same code
    upload = httpx.post(
        f"{asgi_server.url}/v1/rule-sets",
        content=BASE.replace("local_hour < 9", "local_hour < 8"),
        headers={**headers, "Content-Type": "application/yaml"},
    )
    publish = httpx.post(
        f"{asgi_server.url}/v1/rule-sets/{upload.json()['version']}/publish", headers=headers
    )
    assert (publish.status_code, publish.json()["error"]["code"]) == (403, "human_review_required")
    assert RuleSetVersion.objects.get(team=team, is_active=True).number == 1


def test_review_required__person_approves_the_submitted_draft_but_not_their_own(team):
    # Given a team requiring review, a draft a key submitted, and one a person proposed
    Team.objects.filter(pk=team.pk).update(require_policy_review=True)
    submitted = policy_draft_for(team, PROPOSED)
    submitted = policy_draft_approve(draft=submitted, actor=as_key(_key(team)))
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    # (team admins: who decides drafts at all is the service's to check, before four-eyes)
    for person in (alice, bob):
        Membership.objects.create(user=person, team=team, role=Membership.Role.ADMIN)
    own = policy_draft_for(team, PROPOSED, user=alice, name="alice's idea")
    # When alice approves her own, Then four-eyes refuses it
    with pytest.raises(FourEyesRequired):
        policy_draft_approve(draft=own, actor=Actor.person(alice))
    # When bob approves the submitted one, Then it is published and records bob
    approved = policy_draft_approve(draft=submitted, actor=Actor.person(bob))
    assert (approved.status, approved.decided_by_name, approved.decided_by_user) == ("approved", "bob", bob)
    version = RuleSetVersion.objects.get(team=team, is_active=True)
    assert version.number == approved.result_version.number == 2
    assert RuleSetPublication.objects.get(version=version).actor_name == "bob"
    # And then alice's own draft is still open for someone else
    own.refresh_from_db()
    assert own.status == "draft"


def _key(team: Team) -> ApiKey:
    api_key_for(team, name="agent")
    return team.api_keys.get(name="agent")


def test_draft_approve__no_actor__refused(team):
    draft = policy_draft_for(team, PROPOSED)
    with pytest.raises(ApplicationError):
        policy_draft_approve(draft=draft)
    draft.refresh_from_db()
    assert draft.status == "draft"
