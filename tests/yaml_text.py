"""Hypothesis strategies for rule-set source text that is YAML-ish: YAML's tokens, tags,
indentation, brackets, anchors, quotes, unicode and long numbers, mixed at random, sometimes
inside the start of a real rule set so that the deeper paths are reached too."""

from __future__ import annotations

from hypothesis import strategies as st

TOKENS = [
    ":", ": ", "- ", "-", "[", "]", "{", "}", ",", "? ", "#", "|", ">", "|-", ">+", "---", "...",
    "&a ", "*a", "&b", "*b", "<<: ", "!!int ", "!!float ", "!!bool ", "!!null ", "!!str ",
    "!!timestamp ", "!!binary ", "!!set ", "!!omap ", "!!pairs ", "!!map ", "!!seq ", "!foo ",
    "!!python/object:os.system ", "!<tag:yaml.org,2002:int> ", "! ", "%YAML 1.1\n", "%TAG ! !x\n",
    "'", '"', "''", '\\"', "\\", "\\x", "\\u00", "\\ud800",
    "\n", "\n  ", "\n    ", "\n      ", "\n - ", "\t", " ", "  ", "\r\n", "\r",
    "rules", "rules:", "name", "id", "action", "deny", "allow", "when", "tool", "tools", "conditions",
    "field", "operator", "value", "fixtures", "tests", "expect", "metadata", "x",
    "true", "false", "yes", "null", "~", ".inf", "-.inf", ".nan", "0x", "0o", "0b", "1_000",
    "1:30:00", "190:20:30", "1e400", "-1e400", "0.5", "-0", "abc",
    "2020-02-30", "2020-01-01 25:61:61", "2020-01-01T10:00:00Z", "2001-12-14t21:59:43.10-05:00",
    "args.x == 1", "(((", ")))", "é", "ß", "中文", "\u2028", "\u2029", "\x85", "\ufeff", "\U0001f600",
    "\u200b", "\x7f", "\x01", "\x0c",
    # whole values that once reached PyYAML's constructors unguarded
    "x: 2020-02-30", ": 2020-01-01 25:61:61", ": !!int 'abc'", ": !!float 'abc'", "!!bool 'maybe'",
]  # fmt: skip

PREFIXES = [
    "",
    "rules:\n  - ",
    "rules:\n  - name: r\n    action: deny\n    ",
    "rules:\n  - name: r\n    action: deny\n    conditions:\n      - ",
    "rules: [",
    "fixtures:\n  - suite: s\n    tests:\n      - ",
    "{",
]


def _long_number(digits: int) -> str:
    return "9" * digits


yaml_tokens = st.one_of(
    st.sampled_from(TOKENS),
    st.integers(min_value=1, max_value=5000).map(_long_number),
    st.text(max_size=4),
)

yamlish_text = st.builds(
    lambda prefix, tokens: prefix + "".join(tokens),
    st.sampled_from(PREFIXES),
    st.lists(yaml_tokens, max_size=40),
)

# The inputs issue 10 named, so every run tries them whatever Hypothesis draws.
ISSUE_10_INPUTS = [
    "x: 2020-02-30",
    "x: 2020-01-01 25:61:61",
    "x: !!int 'abc'",
    "x: !!float 'abc'",
    "x: " + "1" * 4400,
    "rules:\n  - name: r\n    action: deny\n    metadata: {since: 2020-02-30, n: !!int '12x'}\n",
]
