"""How an approval reads: the argument tree, context fields, durations; no database."""

from __future__ import annotations

import pytest

from approvals.display import (
    MAX_DEPTH,
    MAX_ITEMS,
    PREVIEW_CHARS,
    age_words,
    argument_tree,
    context_value,
    duration_words,
)


def test_argument_tree__flags_values_and_carries_them_up_to_each_fold():
    tree = argument_tree(
        {"to": "dana@example.com", "filters": {"owner": {"phone": "555-010-1234"}, "region": "eu"}}
    )

    to, filters = tree.children
    assert (to.key, to.kind, to.text, to.flags) == ("to", "string", "dana@example.com", ("e-mail address",))
    assert filters.kind == "object" and filters.flags == ()
    assert filters.flagged_inside == ("phone number",)
    assert tree.flagged_inside == ("e-mail address", "phone number")
    assert [c.key for c in filters.children] == ["owner", "region"]


def test_argument_tree__a_name_flags_only_a_value_that_is_there():
    tree = argument_tree({"email": "", "contact_email": "see ticket 12", "phone_count": 3})

    empty, named, count = tree.children
    assert empty.flags == ()
    assert named.flags == ("e-mail address",)
    assert count.flags == ()


def test_argument_tree__scalars_as_written():
    tree = argument_tree([True, None, 1.5, 4111111111111111])

    assert [(c.key, c.kind, c.text) for c in tree.children] == [
        ("[0]", "boolean", "true"),
        ("[1]", "null", "null"),
        ("[2]", "number", "1.5"),
        ("[3]", "number", "4111111111111111"),
    ]
    assert tree.children[3].flags == ("card number",)


def test_argument_tree__long_string__previewed():
    node = argument_tree("x" * (PREVIEW_CHARS + 1))

    assert node.is_long and node.preview == "x" * PREVIEW_CHARS
    assert not argument_tree("x" * PREVIEW_CHARS).is_long


def test_argument_tree__very_deep__shown_as_json_text_below_the_limit():
    value: object = {"mail": "a@example.com"}
    for _ in range(MAX_DEPTH + 5):
        value = {"next": value}

    node = argument_tree(value)
    depth = 0
    while node.is_container:
        node, depth = node.children[0], depth + 1

    assert depth == MAX_DEPTH
    assert node.kind == "string" and node.text.startswith('{"next": ')
    assert node.flags == ("e-mail address",)


def test_argument_tree__huge_list__drawn_up_to_the_limit_and_the_rest_counted():
    node = argument_tree(list(range(MAX_ITEMS + 7)))

    assert (len(node.children), node.omitted, node.size) == (MAX_ITEMS, 7, MAX_ITEMS + 7)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"model": "gpt-5", "custom": {"model": "other"}}, "gpt-5"),
        ({"custom": {"model": "claude"}}, "claude"),
        ({"model": "", "custom": {"model": "claude"}}, "claude"),
        ({"custom": {"model": {"name": "m", "v": 2}}}, '{"name": "m", "v": 2}'),
        ({"custom": "not an object"}, None),
        ({}, None),
        (None, None),
        ("a string", None),
    ],
)
def test_context_value__top_level_then_custom(context, expected):
    assert context_value(context, "model") == expected


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, "—"),
        (-3, "0 s"),
        (0, "0 s"),
        (59.9, "59 s"),
        (75, "1 min 15 s"),
        (3600, "1 h"),
        (3661, "1 h 1 min"),
        (90061, "1 d 1 h"),
    ],
)
def test_duration_words__the_two_largest_units(seconds, words):
    assert duration_words(seconds) == words


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, "—"),
        (-3, "just now"),  # a clock a little ahead of the database's
        (0, "just now"),
        (9.9, "just now"),
        (10, "10 s"),
        (45, "45 s"),
        (59, "59 s"),
        (60, "1 min"),
        (192, "3 min"),  # no seconds once it is minutes
        (3599, "59 min"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (86399, "23 h 59 min"),
        (86400, "1 d"),
        (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"),
    ],
)
def test_age_words__how_long_it_waited__at_a_glance(seconds, words):
    assert age_words(seconds) == words
