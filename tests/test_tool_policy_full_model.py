"""Every field of the SDK's tool-policy model (``veto.admin.Policy``) through the published
SDK's ``VetoAdmin`` against the live ASGI server: created, read back with getPolicy,
listPolicies and exportPolicies, updated field by field, sent back as it came, refused with the
located path of a bad field, and guarded against loosening by a key.

What the SDK's pydantic models do to a policy on the way (veto 0.15.2, pydantic 2), checked
below where a user would notice it:

* unknown keys survive (``extra="allow"``): ``rateLimits``, the session constraints' top-level
  ``maxAction`` and the server's markers (``evaluatedBy``, ...), an output rule's
  ``description``, ``enabled`` and ``output_condition_groups`` are sent and read as they are;
* ``_id`` is read into ``id`` (its alias) and is gone from ``model_dump()``;
* fields typed ``float`` (constraint bounds, ``budget``, ``maxValue``) turn whole numbers into
  floats (1000 → 1000.0), and lax coercion turns ``"100"`` into 100.0 before the server sees it;
* ``createPolicy``/``updatePolicy`` send ``model_dump(exclude_none=True)``, so a field set to
  null is not sent and the server keeps it: output rules, session constraints and rate limits
  are cleared with an empty value instead, and ``llmConfig`` cannot be removed through the SDK.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from veto.admin import Policy, VetoAdmin, VetoAdminError

from policies.engine.constraints import CONSTRAINT_KEYS
from policies.engine.llm_config import ARGUMENT_INSTRUCTION_KEYS, LLM_CONFIG_KEYS
from policies.engine.output_rules import OUTPUT_CONDITION_KEYS, OUTPUT_RULE_KEYS
from policies.engine.session_constraints import (
    COUNTER_KEYS,
    CUMULATIVE_LIMIT_KEYS,
    SESSION_CONSTRAINT_KEYS,
)
from policies.engine.tool_rate_limits import TOOL_RATE_LIMIT_KEYS
from policies.models import ToolPolicy
from tenancy.models import Team
from tests.factories import TeamFactory, api_key_for, publish_rules

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

TOOL = "transfer_funds"
WRITE_ONLY = ("runtime", "policies:write")
# Every key the server accepts, in every part of the model (the coverage test below checks it).
FULL: dict[str, Any] = {
    "toolName": TOOL,
    "mode": "llm",
    "constraints": [
        {
            "argumentName": "amount",
            "enabled": True,
            "action": "require_approval",
            "greaterThan": 0,
            "lessThan": 1_000_000,
            "greaterThanOrEqual": 1,
            "lessThanOrEqual": 999_999,
            "minimum": 1,
            "maximum": 5000,
        },
        {
            "argumentName": "memo",
            "enabled": True,
            "action": "deny",
            "minLength": 1,
            "maxLength": 140,
            "regex": "^[a-z ]*$",
            "required": True,
            "notNull": True,
        },
        {"argumentName": "currency", "enabled": True, "enum": ["EUR", "USD"]},
        # The server's own checks (the SDK's admin model has them, its local validator not).
        {"argumentName": "reference", "enabled": True, "notRegex": "[0-9]{16}", "notEnum": ["test", "dummy"]},
        {"argumentName": "recipients", "enabled": False, "minItems": 1, "maxItems": 10},
        {"argumentName": "fee", "enabled": True, "dynamicMinimum": "minimumFee", "dynamicMaximum": "amount"},
    ],
    "outputRules": [
        {
            "id": "no_iban",
            "name": "Block IBANs",
            "description": "Account numbers never leave the tool",
            "enabled": True,
            "action": "block",
            "tools": [TOOL],
            "output_conditions": [
                {"field": "output.iban", "operator": "matches", "value": "^[A-Z]{2}[0-9]{2}"}
            ],
        },
        {
            "id": "mask_email",
            "name": "Mask e-mail addresses",
            "action": "redact",
            "output_conditions": [
                {"field": "output", "operator": "matches", "value": "[a-z]+@[a-z]+[.][a-z]+"}
            ],
            "redact_with": "[email]",
        },
        {
            "id": "log_large",
            "name": "Log large amounts",
            "enabled": False,
            "action": "log",
            "output_condition_groups": [
                [{"field": "output.amount", "operator": "greater_than", "value": 100}],
                [{"field": "output.currency", "operator": "in", "value": ["GBP", "CHF"]}],
            ],
        },
    ],
    "llmConfig": {
        "description": "Moves money from the customer's account to another one",
        "exceptions": ["a refund of an earlier transfer to the same recipient"],
        "argumentInstructions": [
            {"argumentName": "memo", "instruction": "the reason, in the customer's words"}
        ],
        "preferredModel": "gpt-4o-mini",
    },
    "sessionConstraints": {
        "maxCalls": 5,
        "spendArgument": "amount",
        "budget": 100,
        "maxAction": "require_approval",
        "cumulativeLimits": [{"argumentName": "fee", "maxValue": 10}],
        "counters": {
            "open_transfers": {
                "increment": [TOOL],
                "decrement": ["cancel_transfer"],
                "max": 2,
                "maxAction": "deny",
            }
        },
    },
    "rateLimits": [
        {"scope": "session", "windowSeconds": 60, "maxCalls": 10},
        {"scope": "agent", "windowSeconds": 3600, "maxCalls": 100},
        {"windowSeconds": 86400, "maxCalls": 1000},  # scope defaults to global
    ],
}
# The policy as stored and served: a "deny" action is the default and left out, a rate limit
# without a scope is global; the rest exactly as sent.
STORED_CONSTRAINTS = [
    FULL["constraints"][0],
    {k: v for k, v in FULL["constraints"][1].items() if k != "action"},
    *FULL["constraints"][2:],
]
STORED_RATE_LIMITS = [*FULL["rateLimits"][:2], {"scope": "global", **FULL["rateLimits"][2]}]
# Published with the policy: a rule set rule that limits the tool, which served policies report.
BURST_RULES = """\
rules:
  - id: burst
    tool: transfer_funds
    action: deny
    rate_limits: [{scope: global, window_seconds: 1, max_calls: 3}]
"""
RULE_SET_LIMITS = [{"ruleId": "burst", "scope": "global", "windowSeconds": 1, "maxCalls": 3}]
# What the server adds to the policy's own session constraints so that the SDK asks it: a
# constraint holds calls for approval, the tool moves its own counter, a rule set rule applies.
SERVER_MARKERS = {
    "evaluatedBy": "server",
    "approvalConstraints": True,
    "serverOnlyConstraints": True,
    "sessionCounters": [f"{TOOL}.open_transfers"],
    "ruleSet": {"version": 1, "ruleIds": ["burst"], "defaultAction": "allow"},
}
# The server's own keys of a served policy: not part of what a caller writes.
METADATA = ("id", "projectId", "version", "isActive", "createdAt", "updatedAt", "updatedBy")


@dataclass
class Project:
    id: uuid.UUID
    key: str
    base_url: str

    def admin(self, key: str | None = None) -> VetoAdmin:
        return VetoAdmin(apiKey=key or self.key, baseUrl=self.base_url)


@pytest.fixture
def team(asgi_server) -> Project:
    made = TeamFactory()
    publish_rules(made, BURST_RULES)
    return Project(made.id, api_key_for(made), asgi_server.url)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def update_body(policy: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in policy.items() if k != "toolName"}


def content(policy: Policy) -> dict[str, Any]:
    """What the served policy says about the tool (its metadata aside), as the SDK reads it."""
    return {k: v for k, v in policy.model_dump(exclude_none=True).items() if k not in METADATA}


def expected_content(**changes: Any) -> dict[str, Any]:
    """The served content of FULL with ``changes`` (a field's served value; None: absent)."""
    served = {
        "toolName": TOOL,
        "mode": FULL["mode"],
        "constraints": STORED_CONSTRAINTS,
        "outputRules": FULL["outputRules"],
        "llmConfig": FULL["llmConfig"],
        "sessionConstraints": {**FULL["sessionConstraints"], **SERVER_MARKERS},
        "rateLimits": STORED_RATE_LIMITS + RULE_SET_LIMITS,
    }
    served.update(changes)
    return {k: v for k, v in served.items() if v is not None}


def refusal(exc: VetoAdminError) -> dict[str, Any]:
    """The server's error document inside a VetoAdminError's message ("PUT /x failed (400): {...}")."""
    message = str(exc)
    return json.loads(message[message.index("{") :])["error"]


async def refused(call: Any) -> VetoAdminError:
    try:
        await call
    except VetoAdminError as exc:
        return exc
    raise AssertionError("the call was accepted")


def stored_rows(team_id: uuid.UUID) -> list[tuple]:
    return list(
        ToolPolicy.objects.filter(team_id=team_id).values_list(
            "version",
            "mode",
            "constraints",
            "output_rules",
            "llm_config",
            "session_constraints",
            "rate_limits",
        )
    )


# --- the model, whole --------------------------------------------------------------------------


def _keys(items: Any) -> set[str]:
    return {key for item in items for key in item}


def test_full_policy__uses_every_key_the_server_accepts():
    # A key the server starts to accept fails here until FULL (and so every test below) sets it.
    rules = FULL["outputRules"]
    conditions = [c for rule in rules for c in rule.get("output_conditions", [])]
    conditions += [c for rule in rules for group in rule.get("output_condition_groups", []) for c in group]
    session = FULL["sessionConstraints"]
    assert _keys(FULL["constraints"]) == CONSTRAINT_KEYS
    assert _keys(rules) == set(OUTPUT_RULE_KEYS)
    assert _keys(conditions) == set(OUTPUT_CONDITION_KEYS)
    assert set(session) == SESSION_CONSTRAINT_KEYS
    assert _keys(session["cumulativeLimits"]) == CUMULATIVE_LIMIT_KEYS
    assert _keys(session["counters"].values()) == COUNTER_KEYS
    assert _keys(FULL["rateLimits"]) == set(TOOL_RATE_LIMIT_KEYS)
    assert set(FULL["llmConfig"]) == LLM_CONFIG_KEYS
    assert _keys(FULL["llmConfig"]["argumentInstructions"]) == ARGUMENT_INSTRUCTION_KEYS


def test_sdk_admin_policy__every_field__created_and_read_back_alike_by_get_list_and_export(team):
    # When VetoAdmin creates the policy with every field set, then reads it three ways
    async def scenario() -> tuple[Policy, Policy, list[Policy], str]:
        async with team.admin() as admin:
            created = await admin.createPolicy(FULL)
            return (
                created,
                await admin.getPolicy(TOOL),
                await admin.listPolicies(),
                await admin.exportPolicies(),
            )

    created, fetched, listed, exported = run(scenario())

    # Then every field is served as written, beside the server's markers and the rule set's limits
    assert (created.version, created.isActive, created.projectId) == (1, True, str(team.id))
    assert content(created) == expected_content()
    assert fetched.model_dump() == created.model_dump()
    assert [p.model_dump() for p in listed] == [created.model_dump()]
    # The SDK's typed models hold the typed fields; the ones it does not know are kept as they came
    session = fetched.sessionConstraints
    assert session is not None and session.counters is not None
    assert (session.budget, session.counters["open_transfers"].max) == (100.0, 2)
    assert session.model_extra == {"maxAction": "require_approval", **SERVER_MARKERS}
    assert (
        fetched.model_extra is not None
        and fetched.model_extra["rateLimits"] == STORED_RATE_LIMITS + RULE_SET_LIMITS
    )
    assert fetched.llmConfig is not None and fetched.llmConfig.exceptions == FULL["llmConfig"]["exceptions"]
    assert fetched.outputRules is not None and fetched.outputRules[2].model_extra == {
        "enabled": False,
        "output_condition_groups": FULL["outputRules"][2]["output_condition_groups"],
    }
    # and the export holds the policy's own fields only, which POST /v1/policies takes back
    [entry] = json.loads(exported)["policies"]
    assert entry == {
        "toolName": TOOL,
        "mode": "llm",
        "version": 1,
        "isActive": True,
        "constraints": STORED_CONSTRAINTS,
        "outputRules": FULL["outputRules"],
        "llmConfig": FULL["llmConfig"],
        "sessionConstraints": FULL["sessionConstraints"],
        "rateLimits": STORED_RATE_LIMITS,
    }


def _with(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(policy: dict[str, Any]) -> None:
        *parents, last = path
        target = policy
        for key in parents:
            target = target[key]
        target[last] = value

    return change


# (what changes, the field, its new value as sent, as served; None: as sent plus what the server adds)
UPDATES = {
    "constraint_tightened": (
        "constraints",
        [{**STORED_CONSTRAINTS[0], "maximum": 2000}, *STORED_CONSTRAINTS[1:]],
    ),
    "output_rule_reworded": (
        "outputRules",
        [{**FULL["outputRules"][0], "name": "Block account numbers"}, *FULL["outputRules"][1:]],
    ),
    "llm_instructions_changed": (
        "llmConfig",
        {
            **FULL["llmConfig"],
            "preferredModel": "llama3.1:8b",
            "argumentInstructions": [{"argumentName": "amount", "instruction": "in the account's currency"}],
        },
    ),
    "session_limits_lowered": (
        "sessionConstraints",
        {
            **FULL["sessionConstraints"],
            "maxCalls": 3,
            "budget": 50,
            "maxAction": "deny",
            "cumulativeLimits": [
                {"argumentName": "fee", "maxValue": 5},
                {"argumentName": "tip", "maxValue": 1},
            ],
            "counters": {"open_transfers": {"increment": [TOOL, "schedule_transfer"], "max": 1}},
        },
    ),
    "rate_limits_lowered": ("rateLimits", [{"scope": "session", "windowSeconds": 120, "maxCalls": 5}]),
    "mode_deterministic": ("mode", "deterministic"),
}


@pytest.mark.parametrize("change", list(UPDATES))
def test_sdk_admin_update_policy__one_field__that_field_changes_and_the_others_stay(team, change):
    field, value = UPDATES[change]

    # Given the full policy; when VetoAdmin replaces one field and reads the policy back
    async def scenario() -> tuple[Policy, Policy]:
        async with team.admin() as admin:
            await admin.createPolicy(FULL)
            updated = await admin.updatePolicy(TOOL, {"mode": FULL["mode"], field: value})
            return updated, await admin.getPolicy(TOOL)

    updated, fetched = run(scenario())

    # Then that field is the new one (in its served form), the rest as before, one version on
    served = {
        "constraints": value,
        "outputRules": value,
        "llmConfig": value,
        "sessionConstraints": {**value, **SERVER_MARKERS} if field == "sessionConstraints" else None,
        "rateLimits": value + RULE_SET_LIMITS if field == "rateLimits" else None,
        "mode": value,
    }[field]
    assert updated.version == 2
    assert content(fetched) == expected_content(**{field: served})
    assert fetched.model_dump() == updated.model_dump()


def test_sdk_admin_update_policy__empty_values_clear_and_null_is_not_sent__llm_config_cannot_be_removed(team):
    # Given the full policy; when VetoAdmin sends empty output rules, session constraints and rate
    # limits, then a deterministic mode with llmConfig null (which the SDK leaves out)
    async def scenario() -> tuple[Policy, Policy]:
        async with team.admin() as admin:
            await admin.createPolicy(FULL)
            emptied = await admin.updatePolicy(
                TOOL, {"mode": "llm", "outputRules": [], "sessionConstraints": {}, "rateLimits": []}
            )
            nulled = await admin.updatePolicy(TOOL, {"mode": "deterministic", "llmConfig": None})
            return emptied, nulled

    emptied, nulled = run(scenario())

    # Then the empty ones are cleared: only the rule set's limits and the server's markers are
    # served, less the counter one (the policy has no counter left for the tool to move)
    markers = {k: v for k, v in SERVER_MARKERS.items() if k != "sessionCounters"}
    assert content(emptied) == expected_content(
        outputRules=None, sessionConstraints=markers, rateLimits=RULE_SET_LIMITS
    )
    # and the null one never reached the server: the configuration is kept (unread in this mode)
    assert nulled.mode == "deterministic"
    assert (
        nulled.llmConfig is not None and nulled.llmConfig.model_dump(exclude_none=True) == FULL["llmConfig"]
    )


def test_sdk_admin_update_policy__fetched_policy_sent_back_by_a_write_key__only_the_version_changes(team):
    # Given the full policy, read back; when a key that may not loosen sends it back as it came
    # (the SDK's own model, dumped: markers, ids and the rule set's limits included)
    write_key = api_key_for(Team.objects.get(pk=team.id), scopes=WRITE_ONLY, name="ci")

    async def scenario() -> tuple[Policy, Policy, Policy]:
        async with team.admin() as admin:
            await admin.createPolicy(FULL)
            fetched = await admin.getPolicy(TOOL)
        async with team.admin(write_key) as writer:
            sent_back = await writer.updatePolicy(TOOL, fetched.model_dump())
            return fetched, sent_back, await writer.getPolicy(TOOL)

    fetched, sent_back, again = run(scenario())

    # Then it is accepted (nothing loosens) and nothing but the version (and who changed it) differs
    assert sent_back.version == fetched.version + 1
    assert content(again) == content(fetched) == expected_content()
    assert again.model_dump() == sent_back.model_dump()
    assert (again.id, again.createdAt, again.isActive) == (fetched.id, fetched.createdAt, True)
    assert again.model_extra is not None and again.model_extra["updatedBy"].startswith("API key ci")


# --- bad fields --------------------------------------------------------------------------------

# (the located path the server names, how FULL is spoilt). Each value passes the SDK's pydantic
# models (a value they refuse never reaches the server) and is the body's only problem.
BAD_FIELDS = [
    ("constraints[0].minimum", _with(("constraints", 0, "minimum"), 6000)),
    ("constraints[1].regex", _with(("constraints", 1, "regex"), "(a+)+$")),
    ("constraints[3].notRegex", _with(("constraints", 3, "notRegex"), "(unclosed")),
    ("constraints[3].notEnum", _with(("constraints", 3, "notEnum"), [])),
    ("constraints[2].enum", _with(("constraints", 2, "enum"), [])),
    ("constraints[4].minItems", _with(("constraints", 4, "minItems"), -1)),
    ("constraints[4].maxItemz", _with(("constraints", 4, "maxItemz"), 3)),
    ("constraints[5].dynamicMaximum", _with(("constraints", 5, "dynamicMaximum"), "fee")),
    ("outputRules[0].redact_with", _with(("outputRules", 0, "redact_with"), "***")),
    (
        "outputRules[0].output_conditions[0].operator",
        _with(("outputRules", 0, "output_conditions", 0, "operator"), "resembles"),
    ),
    ("outputRules[2].id", _with(("outputRules", 2, "id"), "no_iban")),
    (
        "outputRules[2].output_condition_groups[1]",
        _with(("outputRules", 2, "output_condition_groups", 1), []),
    ),
    ("sessionConstraints.budget", _with(("sessionConstraints", "budget"), -5)),
    ("sessionConstraints.maxCalls", _with(("sessionConstraints", "maxCalls"), 0)),
    ("sessionConstraints.maxAction", _with(("sessionConstraints", "maxAction"), "allow")),
    (
        "sessionConstraints.cumulativeLimits[0].maxValue",
        _with(("sessionConstraints", "cumulativeLimits", 0, "maxValue"), 0),
    ),
    (
        "sessionConstraints.counters.open_transfers.max",
        _with(("sessionConstraints", "counters", "open_transfers", "max"), -1),
    ),
    (
        "sessionConstraints.counters.open_transfers.decrement",
        _with(("sessionConstraints", "counters", "open_transfers", "decrement"), [TOOL]),
    ),
    (
        "sessionConstraints.counters.open transfers",
        _with(("sessionConstraints", "counters", "open transfers"), {"increment": [TOOL]}),
    ),
    ("rateLimits[0].scope", _with(("rateLimits", 0, "scope"), "planet")),
    ("rateLimits[1].windowSeconds", _with(("rateLimits", 1, "windowSeconds"), 0)),
    ("rateLimits[1]", _with(("rateLimits", 1), {"scope": "session", "windowSeconds": 60, "maxCalls": 5})),
    ("llmConfig.exceptions", _with(("llmConfig", "exceptions"), [])),
    ("llmConfig.preferredModel", _with(("llmConfig", "preferredModel"), "gpt 4o")),
    (
        "llmConfig.argumentInstructions[0].instruction",
        _with(("llmConfig", "argumentInstructions", 0, "instruction"), " "),
    ),
]


@pytest.mark.parametrize(("path", "spoil"), BAD_FIELDS, ids=[path for path, _ in BAD_FIELDS])
def test_sdk_admin_policy__bad_field__400_naming_its_path_and_nothing_stored_or_changed(team, path, spoil):
    bad = copy.deepcopy(FULL)
    spoil(bad)

    # When VetoAdmin creates a policy with the bad field, then updates a good one with it
    async def create_bad() -> VetoAdminError:
        async with team.admin() as admin:
            return await refused(admin.createPolicy(bad))

    async def update_with_bad() -> VetoAdminError:
        async with team.admin() as admin:
            await admin.createPolicy(FULL)
            return await refused(admin.updatePolicy(TOOL, update_body(bad)))

    on_create = run(create_bad())
    nothing = stored_rows(team.id)
    on_update = run(update_with_bad())

    # Then both are a 400 whose error names the path, and nothing was stored or changed
    for exc in (on_create, on_update):
        assert exc.statusCode == 400
        error = refusal(exc)
        assert error["code"] == "invalid_policy"
        assert [problem["path"] for problem in error["details"]["errors"]] == [path]
        assert f"{path}:" in str(exc)
    assert nothing == []
    [(version, mode, constraints, *_)] = stored_rows(team.id)
    assert (version, mode, constraints) == (1, "llm", STORED_CONSTRAINTS)


def test_sdk_admin_create_policy__mode_llm_without_llm_config__400_at_llm_config(team):
    async def scenario() -> VetoAdminError:
        async with team.admin() as admin:
            return await refused(admin.createPolicy({k: v for k, v in FULL.items() if k != "llmConfig"}))

    exc = run(scenario())
    assert exc.statusCode == 400
    assert [p["path"] for p in refusal(exc)["details"]["errors"]] == ["llmConfig"]
    assert stored_rows(team.id) == []


# --- who may loosen ------------------------------------------------------------------------------


def test_sdk_admin_update_policy__write_key_raises_the_budget__403_with_the_reason_and_nothing_changes(team):
    # Given the full policy and a key with policies:write but not policies:publish
    write_key = api_key_for(Team.objects.get(pk=team.id), scopes=WRITE_ONLY)
    raised = {**FULL["sessionConstraints"], "budget": 500}
    lowered = {**FULL["sessionConstraints"], "budget": 80}

    async def create() -> None:
        async with team.admin() as admin:
            await admin.createPolicy(FULL)

    async def update(session_constraints: dict[str, Any]) -> Any:
        async with team.admin(write_key) as writer:
            return await writer.updatePolicy(TOOL, {"mode": "llm", "sessionConstraints": session_constraints})

    # When the key raises the session budget, then lowers it
    run(create())
    loosening = run(refused(update(raised)))
    unchanged = stored_rows(team.id)
    tightened = run(update(lowered))

    # Then raising is refused with the reason and what it takes; lowering is the key's to do
    assert loosening.statusCode == 403
    error = refusal(loosening)
    assert error["code"] == "loosening_not_allowed"
    assert error["details"]["reasons"] == ["session budget is raised from 100.0 to 500.0"]
    assert "policies:publish" in error["message"]
    [(version, *_, session, _)] = unchanged
    assert (version, session["budget"]) == (1, 100.0)
    assert tightened.version == 2
    assert tightened.sessionConstraints is not None and tightened.sessionConstraints.budget == 80.0


def test_sdk_admin_update_policy__review_team__any_key_refused_403_human_review_required(team):
    # Given the full policy on a team that then starts to require review
    async def create() -> None:
        async with team.admin() as admin:
            await admin.createPolicy(FULL)

    run(create())
    Team.objects.filter(pk=team.id).update(require_policy_review=True)
    raised = {**FULL["sessionConstraints"], "budget": 500}

    # When a key with every scope raises the budget (it could loosen elsewhere)
    async def scenario() -> VetoAdminError:
        async with team.admin() as admin:
            return await refused(admin.updatePolicy(TOOL, {"mode": "llm", "sessionConstraints": raised}))

    exc = run(scenario())

    # Then it is refused: a person changes this team's policies, on its policies page
    assert exc.statusCode == 403
    error = refusal(exc)
    assert error["code"] == "human_review_required"
    assert "policies page" in error["message"]
    [(version, *_, session, _)] = stored_rows(team.id)
    assert (version, session["budget"]) == (1, 100.0)
