"""`when:` expressions: CEL plus the integration pages' JavaScript-isms, absent fields read as null."""

import pytest

from policies.engine.errors import ExpressionError
from policies.engine.expressions import compile_expression, rewrite_javascript_isms


def evaluate(source: str, args: dict | None = None, context: dict | None = None) -> bool:
    return compile_expression(source)({"args": args or {}, "context": context or {}, "tool_name": "t"})


@pytest.mark.parametrize(
    ("source", "args", "expected"),
    [
        ("args.include_pii == true", {"include_pii": True}, True),
        ("args.include_pii == true", {"include_pii": False}, False),
        ("args.include_pii == true", {"include_pii": 1}, False),  # strict: 1 is not true
        ("!args.bucket.startsWith('internal-')", {"bucket": "internal-reports"}, False),
        ("!args.bucket.startsWith('internal-')", {"bucket": "s3://public"}, True),
        ("args.definition.length > 200000", {"definition": "x" * 200001}, True),
        ("args.definition.length > 200000", {"definition": "x" * 10}, False),
        ("args.api_key != null", {"api_key": "sk-1"}, True),
        ("args.api_key != null", {}, False),
        (
            r"args.url.match(/^https:\/\/api\.(stripe|twilio)\.invalid\//)",
            {"url": "https://api.stripe.invalid/v1"},
            True,
        ),
        (
            r"args.url.match(/^https:\/\/api\.(stripe|twilio)\.invalid\//)",
            {"url": "https://evil.invalid/"},
            False,
        ),
        ("args.url.match(/STRIPE/i)", {"url": "https://api.stripe.invalid"}, True),
        ("args.amount >= 100 && args.currency in ['EUR', 'USD']", {"amount": 100, "currency": "EUR"}, True),
        ("args.amount === 5", {"amount": 5.0}, True),
        ("size(args.items) > 2", {"items": [1, 2, 3]}, True),
        ("args.items.exists(i, i.price > 10)", {"items": [{"price": 5}, {"price": 11}]}, True),
        ("args.items.all(i, i.price > 10)", {"items": [{"price": 5}, {"price": 11}]}, False),
        ("has(args.token)", {"token": None}, True),
        ("has(args.token)", {}, False),
        ("args.n / 2 == 2.5", {"n": 5}, True),
        ("args.tags.contains('pii')", {"tags": ["pii", "x"]}, True),
        ("args.name.toLowerCase() == 'bob'", {"name": "BoB"}, True),
    ],
)
def test_expression__javascript_and_cel_forms__evaluate_as_documented(source, args, expected):
    # Given an expression from the integration pages or CEL
    # When it is evaluated against call arguments
    # Then the result is the documented one
    assert evaluate(source, args) is expected


@pytest.mark.parametrize(
    "source",
    [
        "args.missing.deep.field == null",
        "args.missing > 3 == false",
        "!args.missing.startsWith('x')",
        "args.missing.length == null",
        "args.list[7] == null",
        "args.x + 1 == null",
    ],
)
def test_expression__absent_fields__read_as_null_never_raise(source):
    # Given arguments that lack every field the expression reads
    # When evaluated
    # Then it evaluates (to true here) instead of raising
    assert evaluate(source, {"list": [1]}) is True


def test_expression__context_custom_fields__are_read_from_the_merged_context():
    assert evaluate('context.environment == "production"', context={"environment": "production"}) is True
    assert evaluate("context.local_hour < 9 || context.local_hour >= 20", context={"local_hour": 21}) is True
    assert evaluate("context.local_hour < 9 || context.local_hour >= 20", context={"local_hour": 12}) is False


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("args.", "syntax error"),
        ("foo == 1", "unknown name 'foo'"),
        ("args.x.frob()", "unknown method .frob()"),
        ("args.x.matches(args.pattern)", "literal pattern"),
        (r"args.x.matches('(a)\\1')", "not supported"),  # backreference: RE2 refuses it
        ("args.x.matches('(?=a)')", "not supported"),  # lookahead
        ("args.x.match(/abc/z)", "flag 'z'"),
        ("", "empty"),
    ],
)
def test_expression__invalid__raises_expression_error_naming_the_problem(source, fragment):
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    assert fragment in str(caught.value)


def test_rewrite__regex_literal_and_strict_equality__become_cel():
    assert rewrite_javascript_isms(r"a.match(/x\/y/i) === true") == 'a.match("(?i)x/y") == true'
    # division is left alone: '/' after an operand is an operator
    assert rewrite_javascript_isms("args.a / 2 > 1") == "args.a / 2 > 1"
    # strings are copied untouched
    assert rewrite_javascript_isms("x == '/not/a/regex/ === '") == "x == '/not/a/regex/ === '"


def test_regex__catastrophic_pattern__runs_in_linear_time():
    # Given the classic ReDoS pattern, which backtracking engines take exponential time on
    evaluate_fn = compile_expression("args.s.matches('^(a+)+$')")
    # When it is run on an adversarial input
    # Then RE2 answers at once (this would hang Python's re for hours)
    assert evaluate_fn({"args": {"s": "a" * 5000 + "!"}, "context": {}, "tool_name": "t"}) is False
