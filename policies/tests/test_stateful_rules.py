"""Rules that need state the engine does not keep: rate limits (asked of the caller) and
sequence constraints (over the history the caller passes in). Pure: no database, no Redis."""

from datetime import UTC, datetime, timedelta

import pytest

from policies.engine import HistoryEntry, RateLimit, RateLimitCheck, ToolCall, compile_rule_set, load_rule_set

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

RATE_LIMITED = """
rules:
  - id: sms_burst
    tool: send_sms
    action: deny
    message: too many texts
    rate_limits:
      - {scope: agent, window_seconds: 60, max_calls: 3}
      - {scope: global, window_seconds: 3600, max_calls: 100}
  - id: no_premium_numbers
    tool: send_sms
    when: "args.to.startsWith('+1900')"
    action: deny
"""


def test_decide__rate_limited_rule__asks_with_sdk_bucket_keys_and_passes_when_counted():
    # Given a rule with two limits
    rules = compile_rule_set(load_rule_set(RATE_LIMITED))
    steps = rules.decide(ToolCall("send_sms", {"to": "+4930"}, {"agent_id": "bot-1"}, now=NOW))

    # When the engine reaches the rule, it asks about both buckets, keyed as the SDK keys them
    check = next(steps)
    assert check == RateLimitCheck(
        "sms_burst",
        (
            (RateLimit("agent", 60, 3), "sms_burst:agent:bot-1:send_sms"),
            (RateLimit("global", 3600, 100), "sms_burst:global:global:send_sms"),
        ),
    )
    # Then, answered "counted, not exceeded", the rule does not fire and the call is allowed
    with pytest.raises(StopIteration) as finished:
        steps.send(None)
    assert finished.value.value.decision == "allow"


def test_decide__rate_limit_exceeded__rule_fires_with_the_sdk_wording():
    rules = compile_rule_set(load_rule_set(RATE_LIMITED))

    decision = rules.evaluate(
        ToolCall("send_sms", {"to": "+4930"}, {"agent_id": "bot-1"}, now=NOW),
        rate_limiter=lambda check: check.buckets[0][0],
    )

    assert (decision.decision, decision.rule_id, decision.rate_limited) == ("deny", "sms_burst", True)
    assert decision.reason == "Rate limit exceeded: max 3 calls per 60s (scope: agent). too many texts"


def test_decide__call_without_agent_id__counts_in_the_global_bucket_as_the_sdk_does():
    rules = compile_rule_set(load_rule_set(RATE_LIMITED))

    check = next(rules.decide(ToolCall("send_sms", {"to": "+4930"}, {}, now=NOW)))

    assert check.buckets[0][1] == "sms_burst:agent:global:send_sms"


def test_decide__earlier_rule_decides__rate_limited_rule_is_never_asked():
    # Given a blocking rule before the rate-limited one: a refused call must not be counted
    rules = compile_rule_set(
        load_rule_set(
            """
rules:
  - {id: premium, tool: send_sms, when: "args.to.startsWith('+1900')", action: deny}
  - {id: burst, tool: send_sms, action: deny, rate_limits: [{scope: global, window_seconds: 60, max_calls: 1}]}
"""
        )
    )
    asked = []

    decision = rules.evaluate(
        ToolCall("send_sms", {"to": "+1900555"}, now=NOW), rate_limiter=lambda c: asked.append(c)
    )

    assert (decision.rule_id, asked) == ("premium", [])


def test_decide__rate_limited_rule_whose_conditions_fail__is_never_asked():
    rules = compile_rule_set(load_rule_set(RATE_LIMITED))
    asked = []

    rules.evaluate(ToolCall("deploy", {}, now=NOW), rate_limiter=lambda c: asked.append(c))

    assert asked == []


SEQUENCES = """
rules:
  - id: deploy_needs_tests
    tool: deploy
    action: deny
    requires:
      - tool: run_tests
        within: 3600
        conditions: [{field: arguments.suite, operator: equals, value: full}]
  - id: no_export_after_pii_read
    tool: export
    action: require_approval
    blocked_by:
      - {tool: read_pii}
"""


def entry(tool, arguments=None, *, decision="allow", age_seconds=10):
    return HistoryEntry(tool, arguments or {}, decision, NOW - timedelta(seconds=age_seconds))


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], "deny"),
        ([entry("run_tests", {"suite": "full"})], "allow"),
        ([entry("run_tests", {"suite": "smoke"})], "deny"),
        ([entry("run_tests", {"suite": "full"}, age_seconds=7200)], "deny"),
        ([entry("run_tests", {"suite": "full"}, decision="deny")], "deny"),
        ([entry("run_tests", {"suite": "full"}, decision="require_approval")], "allow"),
    ],
    ids=[
        "no tests",
        "full suite",
        "wrong suite",
        "too long ago",
        "tests were denied",
        "tests awaited approval",
    ],
)
def test_evaluate__requires__needs_a_matching_recent_call(history, expected):
    rules = compile_rule_set(load_rule_set(SEQUENCES))

    decision = rules.evaluate(ToolCall("deploy", {}, now=NOW, history=history))

    assert decision.decision == expected


def test_evaluate__blocked_by__fires_after_the_named_call():
    rules = compile_rule_set(load_rule_set(SEQUENCES))

    before = rules.evaluate(ToolCall("export", {}, now=NOW, history=[entry("list_tables")]))
    after = rules.evaluate(ToolCall("export", {}, now=NOW, history=[entry("read_pii")]))

    assert (before.decision, after.decision, after.rule_id) == (
        "allow",
        "require_approval",
        "no_export_after_pii_read",
    )


def test_compiled_rule_set__knows_which_tools_need_and_feed_history():
    rules = compile_rule_set(load_rule_set(SEQUENCES))

    assert rules.history_tools == {"run_tests", "read_pii"}
    assert (
        rules.needs_history("deploy"),
        rules.needs_history("export"),
        rules.needs_history("read_pii"),
    ) == (
        True,
        True,
        False,
    )


def test_document__mode_and_fail_mode__reach_the_compiled_rule_set():
    rules = compile_rule_set(load_rule_set("mode: shadow\nsettings: {fail_mode: open}\nrules: []\n"))
    default = compile_rule_set(load_rule_set("rules: []\n"))

    assert (rules.mode, rules.fail_mode, default.mode, default.fail_mode) == (
        "shadow",
        "open",
        "strict",
        "closed",
    )


def test_replayer__recorded_calls_in_order__rebuilds_rate_windows_and_session_histories():
    # Given a candidate with a limit of 2 per agent a minute, and a sequence rule
    from policies.engine.replay import Replayer

    rules = compile_rule_set(
        load_rule_set(
            RATE_LIMITED.replace("max_calls: 3", "max_calls: 2")
            + "  - {id: deploy_needs_tests, tool: deploy, action: deny, requires: [{tool: run_tests}]}\n"
        )
    )
    replayer = Replayer(rules)
    bot = {"agent_id": "bot-1", "session_id": "s1"}

    # When recorded calls are replayed at their recorded times
    decided = [
        replayer.decide("send_sms", {"to": "+4930"}, bot, NOW).decision,
        replayer.decide("send_sms", {"to": "+1900"}, bot, NOW + timedelta(seconds=1)).decision,  # premium
        replayer.decide("send_sms", {"to": "+4930"}, bot, NOW + timedelta(seconds=2)).decision,
        replayer.decide("send_sms", {"to": "+4930"}, bot, NOW + timedelta(seconds=3)).decision,  # third
        replayer.decide(
            "send_sms", {"to": "+4930"}, bot, NOW + timedelta(seconds=61)
        ).decision,  # window moved
        replayer.decide("deploy", {}, bot, NOW + timedelta(seconds=62)).decision,
        replayer.decide("run_tests", {}, bot, NOW + timedelta(seconds=63)).decision,
        replayer.decide("deploy", {}, bot, NOW + timedelta(seconds=64)).decision,
    ]

    # Then the limit, the refund of the refused call, the window and the history all show
    assert decided == ["allow", "deny", "allow", "deny", "allow", "deny", "allow", "allow"]
