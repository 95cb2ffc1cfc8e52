"""Identity keys: every spelling a reader takes for the same name folds to one key; different
plain names stay different. Pure functions: no database."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenancy.identity import identities_in_call_context, identity_key, same_identity

NAMES = st.text(alphabet=string.ascii_lowercase + string.digits + "._-@", min_size=1, max_size=24).filter(
    lambda name: any(char.isalpha() for char in name)
)
INVISIBLE = st.sampled_from(
    ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u202e", "\ufe0f"]
)
# Letters of other scripts that look like Latin ones (each is in Unicode's confusables data).
LOOK_ALIKES = {
    "a": "а",
    "c": "с",
    "e": "е",
    "o": "о",
    "p": "р",
    "x": "х",
    "y": "у",
    "i": "і",
    "s": "ѕ",
    "j": "ј",
}


@given(st.text(max_size=40))
def test_identity_key__any_text__folding_again_changes_nothing(text):
    # Given any text, When its key is folded again, Then it is the same key
    assert identity_key(identity_key(text)) == identity_key(text)


@given(NAMES, st.lists(st.tuples(st.integers(min_value=0), INVISIBLE), max_size=5))
def test_identity_key__invisible_characters_inserted__same_key(name, insertions):
    # Given a name with zero-width and other invisible characters inserted anywhere
    spelled = name
    for position, char in insertions:
        at = position % (len(spelled) + 1)
        spelled = spelled[:at] + char + spelled[at:]

    # Then it is the same identity
    assert identity_key(spelled) == identity_key(name)


@given(NAMES, st.data())
def test_identity_key__case_fullwidth_and_look_alike_letters__same_key(name, data):
    # Given the name re-spelled letter by letter: upper case, fullwidth forms, other scripts' look-alikes
    def respell(char: str) -> str:
        choices = [char, char.upper(), chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char]
        if char in LOOK_ALIKES:
            choices.append(LOOK_ALIKES[char])
        return data.draw(st.sampled_from(choices))

    spelled = "".join(respell(char) for char in name)

    # Then it is the same identity
    assert same_identity(spelled, name)


@given(
    st.text(alphabet=string.ascii_lowercase, min_size=1), st.text(alphabet=string.ascii_lowercase, min_size=1)
)
def test_identity_key__different_plain_names__different_keys(first, second):
    # Given two names of plain lowercase letters, Then they are one identity exactly when they
    # are the same name, up to "m" written as "rn" (the one look-alike among plain letters)
    assert same_identity(first, second) == (first.replace("m", "rn") == second.replace("m", "rn"))


@pytest.mark.parametrize(
    "spelling",
    [
        "alice",
        "Alice",
        " ALICE ",
        "ａｌｉｃｅ",
        "al\u200bice",
        "аlice",
        "a1ice",
        "al\u0131ce",
        "𝐚𝐥𝐢𝐜𝐞",
        "al\u00adice",
    ],
)
def test_same_identity__known_spellings_of_alice__all_alice(spelling):
    assert same_identity(spelling, "alice")


@pytest.mark.parametrize("spelling", ["rnallory", "MALLORY", "\uff4dallory", "ma\u2060llory"])
def test_same_identity__known_spellings_of_mallory__all_mallory(spelling):
    assert same_identity(spelling, "mallory")


@pytest.mark.parametrize("blank", ["", " ", "\u200b\u200d", "\ufeff"])
def test_same_identity__blank_values__name_nobody(blank):
    # An id with nothing visible in it matches nobody, not every other blank id
    assert not same_identity(blank, blank)
    assert identity_key(blank) == ""


def test_identities_in_call_context__every_place_the_sdk_and_teams_put_the_caller__all_found():
    # Given a context naming its caller in the SDK's field, camelCase, custom, and a nested object
    context = {
        "user_id": None,
        "userId": "top-camel",
        "USER-ID": "shouting",
        "agent_id": "agent-7",
        "session_id": "s-1",
        "custom": {
            "user_id": "custom-snake",
            "userId": "custom-camel",
            "user": {"id": "nested", "email": "n@x"},
        },
        "email": "e@x",
    }

    # Then every identity is read, and nothing that is not one
    assert identities_in_call_context(context) == {
        "top-camel",
        "shouting",
        "custom-snake",
        "custom-camel",
        "nested",
        "n@x",
        "e@x",
    }


@pytest.mark.parametrize(
    "context", [None, [], "alice", {"custom": "alice"}, {"user_id": True}, {"user_id": " "}]
)
def test_identities_in_call_context__no_identity__empty(context):
    assert identities_in_call_context(context) == set()
