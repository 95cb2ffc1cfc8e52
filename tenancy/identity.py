"""Whether two spellings name the same person: identities compared as a person reads them.

An id typed by a person or sent by an agent ("Alice", "ａｌｉｃｅ", "al\u200bice", Cyrillic "аlice")
must compare equal to the account it looks like, or a rule such as "nobody approves their own
request" is a matter of spelling. ``identity_key`` folds every such spelling to one key:

1. NFKC (compatibility forms: fullwidth, ligatures, mathematical letters become plain letters);
2. case folding (``str.casefold``: "ß" and "SS" alike);
3. invisible characters removed: Unicode's Default_Ignorable_Code_Point set (zero-width space
   and joiners, bidi controls, variation selectors, soft hyphen, ...), other format and control
   characters, and whitespace;
4. confusables mapped: each character to the representative of its look-alike class in
   Unicode's confusables data (UTS #39, as the ``confusable-homoglyphs`` package ships it), so
   Cyrillic "а" is "a", "1" and "|" are "l", "0" is "o", and "m" is written "rn";

repeated until nothing changes. Pure Python, no Django: ``identities_in_call_context`` also
reads every place the SDK (and API-mode callers) put the caller's identity in a call's context.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterator, Mapping
from functools import lru_cache

# DerivedCoreProperties.txt, Default_Ignorable_Code_Point (Unicode 15.1): what renders as nothing.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_MAX_ROUNDS = 4


def _is_invisible(char: str) -> bool:
    point = ord(char)
    if any(low <= point <= high for low, high in _DEFAULT_IGNORABLE):
        return True
    # Cc control, Cf format, Zs/Zl/Zp separators: nothing a person sees as part of a name.
    return unicodedata.category(char) in {"Cc", "Cf", "Zs", "Zl", "Zp"} or char.isspace()


def _preference(char: str) -> tuple[int, int]:
    """Which member of a look-alike class stands for it: a lowercase ASCII letter, then an
    uppercase one, then a digit, then other ASCII, then the lowest code point."""
    if char in string.ascii_lowercase:
        rank = 0
    elif char in string.ascii_uppercase:
        rank = 1
    elif char in string.digits:
        rank = 2
    elif ord(char) < 128:
        rank = 3
    else:
        rank = 4
    return rank, ord(char)


@lru_cache(maxsize=1)
def _confusable_map() -> tuple[dict[str, str], frozenset[str]]:
    """Character -> its class's representative (case-folded), for every character that has
    look-alikes; and every character in some class. The package lists, for each character, the
    others it can be mistaken for; the classes are the connected groups of those pairs. Of the
    multi-character look-alikes, the plain-ASCII ones are kept as UTS #39's skeleton has them:
    a class whose letter looks like a sequence ("m" and "rn") maps to the sequence."""
    from confusable_homoglyphs.confusables import confusables_data

    parent: dict[str, str] = {}

    def root(char: str) -> str:
        parent.setdefault(char, char)
        while parent[char] != char:
            parent[char] = parent[parent[char]]
            char = parent[char]
        return char

    sequences: list[tuple[str, str]] = []
    for key, homoglyphs in confusables_data.items():
        # The data wraps right-to-left letters in LEFT-TO-RIGHT MARKs for display.
        source = key.replace("\u200e", "")
        if len(source) != 1:
            continue
        for homoglyph in homoglyphs:
            target = homoglyph["c"].replace("\u200e", "")
            if len(target) != 1:
                if target.isascii() and target.isalnum():
                    root(source)  # in a class of its own at least
                    sequences.append((source, target.casefold()))
                continue
            a, b = root(source), root(target)
            if a != b:
                parent[a] = b
    classes: dict[str, list[str]] = {}
    for char in list(parent):
        classes.setdefault(root(char), []).append(char)
    # A class that looks like a plain sequence is written as the (smallest such) sequence.
    as_sequence: dict[str, str] = {}
    for source, target in sorted(sequences):
        as_sequence.setdefault(root(source), target)
    mapping: dict[str, str] = {}
    for class_root, members in classes.items():
        representative = as_sequence.get(class_root) or min(members, key=_preference).casefold()
        for char in members:
            if char != representative:
                mapping[char] = representative
    return mapping, frozenset(parent) | frozenset(chr(point) for point in range(128))


def _fold_once(value: str) -> str:
    confusables, known = _confusable_map()
    out: list[str] = []
    for char in unicodedata.normalize("NFKC", value):
        if _is_invisible(char):
            continue
        folded = char.casefold()
        # Case first ("I" is "i", not the "l" it resembles), unless only the original is in the
        # data (Cherokee capitals look like Latin ones; their lowercase forms are not listed).
        if all(part in known for part in folded) or char not in known:
            out.extend(confusables.get(part, part) for part in folded)
        else:
            out.append(confusables.get(char, char).casefold())
    return "".join(out)


def identity_key(value: str) -> str:
    """The comparison key of an identity (user name, e-mail, user id): equal keys name the same
    person as far as a reader can tell. ``""`` for a value with nothing visible in it."""
    key = value
    for _ in range(_MAX_ROUNDS):
        folded = _fold_once(key)
        if folded == key:
            break
        key = folded
    return key


def same_identity(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same person (neither may be blank)."""
    key = identity_key(a)
    return bool(key) and key == identity_key(b)


# Names of fields that hold the caller's identity, compared by their own key (so ``user_id``,
# ``userId``, ``USER-ID`` and ``user id`` are one name). ``user_id`` is the SDK's; the others are
# what teams put into ``context.custom`` or an API-mode context.
_IDENTITY_FIELDS = frozenset(
    {
        "userid",
        "user",
        "username",
        "useremail",
        "email",
        "emailaddress",
        "requester",
        "requestedby",
        "onbehalfof",
    }
)
# Inside an object under such a field (``custom.user = {"id": ..., "email": ...}``).
_NESTED_IDENTITY_FIELDS = _IDENTITY_FIELDS | {"id", "login", "name"}


def _field_key(name: str) -> str:
    # A field's name, not a person's: case, width and separators fold, letters are not mapped.
    return "".join(char for char in unicodedata.normalize("NFKC", name).casefold() if char.isalnum())


def _identity_values(value: object, nested_fields: frozenset[str], depth: int) -> Iterator[str]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, int):
        yield str(value)
    elif isinstance(value, Mapping) and depth > 0:
        for name, inner in value.items():
            if isinstance(name, str) and _field_key(name) in nested_fields:
                yield from _identity_values(inner, nested_fields, depth - 1)
    elif isinstance(value, list | tuple) and depth > 0:
        for inner in value:
            yield from _identity_values(inner, nested_fields, depth - 1)


def identities_in_call_context(context: object) -> set[str]:
    """Every identity a call's context names as its caller, as sent (not normalised): its
    ``user_id`` (the SDK's field) under any spelling of the name (``userId``, ...), the same in
    ``context.custom`` (where ``VetoConfig.custom_context`` and a call's ``custom`` go), and the
    ids inside an object such as ``custom.user = {"id": ..., "email": ...}``."""
    if not isinstance(context, Mapping):
        return set()
    found: set[str] = set()
    places: list[Mapping[object, object]] = [context]
    for name, value in context.items():
        if isinstance(name, str) and _field_key(name) == "custom" and isinstance(value, Mapping):
            places.append(value)
    for place in places:
        for name, value in place.items():
            if isinstance(name, str) and _field_key(name) in _IDENTITY_FIELDS:
                found.update(_identity_values(value, _NESTED_IDENTITY_FIELDS, depth=2))
    return {value for value in found if identity_key(value)}
