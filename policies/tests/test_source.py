"""Loading rule-set source text (policies/engine/source.py): every failure is a RuleSetError
whose problems name a line, values are what JSON can hold, and the published limits hold."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings

from policies.engine import RuleSetError, load_rule_set
from policies.engine.errors import RuleSetTooLarge
from policies.engine.source import Limits
from tests.yaml_text import ISSUE_10_INPUTS, yamlish_text


def problems_of(source: str, **kwargs) -> list[dict]:
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(source, **kwargs)
    return [p.as_dict() for p in caught.value.problems]


@given(yamlish_text)
@settings(max_examples=600, deadline=None)
@example("x: 2020-02-30")
@example("x: !!int 'abc'")
def test_load__any_yamlish_text__a_json_document_or_problems_that_each_name_a_line(source):
    # Given any YAML-ish text, when it is loaded,
    try:
        document = load_rule_set(source)
    except RuleSetError as exc:
        # then it is refused with problems that each say where (no other exception escapes),
        assert exc.problems
        assert all(isinstance(p.line, int) and p.line >= 1 for p in exc.problems), exc.problems
        return
    # or it is a document JSON can store as it is.
    json.dumps(document, allow_nan=False)


@pytest.mark.parametrize(
    ("source", "path", "line", "fragment"),
    [
        # issue 10, finding 3: PyYAML raised ValueError for these (a 500)
        ("rules: []\nmetadata:\n  x: !!int 'abc'\n", "metadata.x", 3, "'abc' is not a whole number"),
        ("rules: []\nx: !!float 'abc'\n", "x", 2, "'abc' is not a number"),
        ("rules: []\nx: !!bool 'maybe'\n", "x", 2, "'maybe' is not true or false"),
        ("rules: []\nx: !<tag:yaml.org,2002:int> ''\n", "x", 2, "'' is not a whole number"),
        ("rules: []\nx: !!float ''\n", "x", 2, "'' is not a number"),
        ("rules: []\nx: " + "1" * 4400 + "\n", "x", 2, "4400 digits is too long"),
        ("rules: []\nx: 0x" + "f" * 4000 + "\n", "x", 2, "too large an integer"),
        ("rules: []\nx: 1.0e+400\n", "x", 2, "not a finite number"),
        ("rules: []\nx: .nan\n", "x", 2, "not a finite number"),
        # tags that build what JSON cannot hold, or anything at all
        ("rules: []\nx: !!binary aGk=\n", "x", 2, "unsupported tag !!binary"),
        ("rules: []\nx: !!set {a, b}\n", "x", 2, "unsupported tag !!set"),
        ("rules: []\nx: !!python/object:os.system ls\n", "x", 2, "unsupported tag !!python/object"),
        ("rules: []\nx: !custom 1\n", "x", 2, "unsupported tag !custom"),
        ("rules: []\nx: !!str {a: 1}\n", "x", 2, "unsupported tag !!str on a mapping"),
        ("rules: []\nx:\n  <<: {a: 1}\n", "x", 3, "merge keys"),
        ("rules: []\nx: [1]\ny: &a [2]\nz: *a\n", "", 4, "aliases"),
        ("rules: []\n---\nrules: []\n", "", 2, "one YAML document"),
        ("rules: []\nx: \x01\n", "", 2, "#x0001 is not allowed"),
    ],
)
def test_load__values_yaml_cannot_build_or_json_cannot_hold__a_problem_at_their_line(
    source, path, line, fragment
):
    # Given a document with such a value, when it is loaded, then the problem names path and line.
    problems = problems_of(source)
    assert any(p["path"] == path and p["line"] == line and fragment in p["message"] for p in problems), (
        problems
    )


@pytest.mark.parametrize(
    "stamp", ["2020-02-30", "2020-01-01 25:61:61", "2001-12-14t21:59:43.10-05:00", "2020-01-01"]
)
def test_load__dates_and_times__stay_the_text_they_are_written_as(stamp):
    # Given a timestamp-looking value (valid or not), when the document is loaded,
    document = load_rule_set(f"rules:\n  - name: r\n    action: deny\n    metadata: {{since: {stamp}}}\n")
    # then it is the string as written, which JSON can store.
    assert document["rules"][0]["metadata"] == {"since": stamp}


def test_load__unclosed_bracket__points_at_its_line_and_says_where_it_was_noticed():
    # Given (issue 10, finding 4) a "[" left open on line 33, noticed on line 34,
    source = "rules:\n" + "  # filler\n" * 30 + "  - name: r\n    tools: [a, b\n  - name: s\n"
    # when it is loaded,
    (problem,) = problems_of(source)
    # then the problem points at line 33 (where the construct starts) and also names line 34.
    assert (problem["line"], problem["noticed_line"]) == (33, 34), problem
    assert "line 33" in problem["message"] and "noticed at line 34" in problem["message"]


@pytest.mark.parametrize(
    ("source", "line", "noticed"),
    [
        ("a: 1\nb: [1,\n  2\nc: 3\n", 2, 4),
        ("a: 1\nb: 'open\n\n", 2, 4),
        ("a: 1\nb: {x: 1\n\n", 2, 4),
        ("rules: [\n", 1, 2),
    ],
)
def test_load__syntax_errors__the_line_where_the_construct_starts(source, line, noticed):
    (problem,) = problems_of(source)
    assert (problem["line"], problem["noticed_line"]) == (line, noticed), problem


@pytest.mark.parametrize(
    ("source", "content_type", "line", "fragment"),
    [
        ('{"rules": [],\n "x": ' + "1" * 4400 + "}", "application/json", 2, "4400 digits"),
        ('{"rules": [],\n "x": 1e400}', "application/json", 2, "too large a number"),
        ('{"rules": [],\n "x": NaN}', "application/json", 2, "NaN is not a JSON number"),
        ('{"rules": [\n', "application/json", 2, "invalid JSON"),
        ('{"rules": [\n  {"name": "r",\n   "action": "nope"}]}', "application/json", 3, "unknown action"),
    ],
)
def test_load__json_that_python_cannot_read__a_problem_at_its_line(source, content_type, line, fragment):
    problems = problems_of(source, content_type=content_type)
    assert any(p["line"] == line and fragment in p["message"] for p in problems), problems


def test_load__expression_nested_too_deeply__a_problem_not_a_recursion_error():
    # Given a when: of 40 nested parentheses (the compiler recursed ~27 frames a level),
    source = "rules:\n  - name: r\n    action: deny\n    when: '" + "(" * 40 + "true" + ")" * 40 + "'\n"
    # when it is loaded, then it is a problem of that rule's when, at its line.
    (problem,) = problems_of(source)
    assert (problem["path"], problem["line"]) == ("rules[0].when", 4)
    assert "nests too deeply" in problem["message"]


SMALL = Limits(
    max_bytes=2000,
    max_rules=3,
    max_depth=6,
    max_string_length=50,
    max_fixture_tests=2,
    max_expression_chars=20,
)


@pytest.mark.parametrize(
    ("source", "content_type", "limit", "maximum", "line"),
    [
        ("rules: []\n# " + "x" * 2000, "application/yaml", "max_bytes", 2000, 1),
        ("rules:\n" + "  - {name: r, action: deny}\n" * 4, "application/yaml", "max_rules", 3, 1),
        (
            '{"rules": [' + ", ".join(['{"name": "r", "action": "deny"}'] * 4) + "]}",
            "json",
            "max_rules",
            3,
            1,
        ),
        (
            "rules:\n  - {name: a, action: deny, when: args.x == 1}\n  - {name: b, action: deny, when: args.y == 1}\n",
            "application/yaml",
            "max_expression_chars",
            20,
            1,
        ),
        ("rules: []\nmetadata:\n  a: [[[[[1]]]]]\n", "application/yaml", "max_depth", 6, 3),
        ('{"rules": [],\n "a": [[[[[[1]]]]]]}', "application/json", "max_depth", 6, 2),
        ("rules: []\nx: " + "y" * 51 + "\n", "application/yaml", "max_string_length", 50, 2),
        ('{"rules": [],\n "x": "' + "y" * 51 + '"}', "application/json", "max_string_length", 50, 2),
        (
            "rules: []\nfixtures:\n  - suite: s\n    tests: [{id: a, tool: t}, {id: b, tool: t}, {id: c, tool: t}]\n",
            "application/yaml",
            "max_fixture_tests",
            2,
            2,
        ),
    ],
)
def test_load__over_a_limit__refused_naming_the_limit_its_value_and_a_line(
    source, content_type, limit, maximum, line
):
    # Given a document just over one limit, when it is loaded with those limits,
    with pytest.raises(RuleSetTooLarge) as caught:
        load_rule_set(source, content_type=content_type, limits=SMALL)
    # then the refusal names the limit, its value and where.
    assert (caught.value.limit, caught.value.maximum) == (limit, maximum)
    assert caught.value.problems[0].line == line


def test_load__at_the_limits__accepted():
    # Given a document exactly at each limit, when it is loaded, then it is a rule set.
    source = (
        "rules:\n"
        + "  - {name: a, action: deny, metadata: {x: [1]}}\n"
        + "  - {name: b, action: deny}\n  - {name: c, action: deny, message: "
        + "m" * 50
        + "}\nfixtures:\n  - {suite: s, tests: [{id: a, tool: t, expect: {}}, {id: b, tool: t, expect: {}}]}\n"
    )
    assert len(load_rule_set(source, limits=SMALL)["rules"]) == 3


@pytest.mark.parametrize("source", ISSUE_10_INPUTS)
def test_load__issue_10_inputs__refused_with_a_line(source):
    assert all(isinstance(p["line"], int) for p in problems_of(source))
