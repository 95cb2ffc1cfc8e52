"""A rule's id and name fit what every decision records (policies.engine.document.RULE_ID_MAX,
RULE_NAME_MAX): a longer one is a problem of the document, not a decision that cannot be stored."""

from __future__ import annotations

import pytest

from policies.engine import RuleSetError, load_rule_set
from policies.engine.document import RULE_ID_MAX, RULE_NAME_MAX


def _problems(source: str) -> list[tuple[str, str]]:
    with pytest.raises(RuleSetError) as refused:
        load_rule_set(source)
    return [(problem.path, problem.message) for problem in refused.value.problems]


def test_rule__id_and_name_at_the_limit__load():
    document = load_rule_set(
        f"rules:\n  - {{id: {'i' * RULE_ID_MAX}, name: {'n' * RULE_NAME_MAX}, tool: rm, action: block}}\n"
    )
    assert (len(document["rules"][0]["id"]), len(document["rules"][0]["name"])) == (
        RULE_ID_MAX,
        RULE_NAME_MAX,
    )


def test_rule__id_one_over__refused_at_its_path():
    source = f"rules:\n  - {{id: {'i' * (RULE_ID_MAX + 1)}, name: short, tool: rm, action: block}}\n"
    assert _problems(source) == [("rules[0].id", f"a rule id may be at most {RULE_ID_MAX} characters")]


def test_rule__name_one_over__refused_at_its_path():
    source = f"rules:\n  - {{id: short, name: {'n' * (RULE_NAME_MAX + 1)}, tool: rm, action: block}}\n"
    assert _problems(source) == [("rules[0].name", f"a rule name may be at most {RULE_NAME_MAX} characters")]


def test_rule__long_name_standing_for_the_id__refused_once_where_it_was_written():
    source = f"rules:\n  - {{name: {'n' * (RULE_ID_MAX + 1)}, tool: rm, action: block}}\n"
    assert _problems(source) == [("rules[0].name", f"a rule id may be at most {RULE_ID_MAX} characters")]
