"""The edge rules both stacks share (common/edge.py), without a server or a database."""

from __future__ import annotations

import pytest
from django.core.exceptions import RequestDataTooBig
from django.test import override_settings

from common import edge
from common.errors import InvalidInput, error_for_exception


@pytest.mark.parametrize(
    ("raw", "seconds"), [(None, 0.0), ("", 0.0), ("0", 0.0), ("2.5", 2.5), ("60", 60.0), (" 7 ", 7.0)]
)
def test_wait_seconds__absent_or_in_range__the_seconds(raw, seconds):
    assert edge.wait_seconds(raw) == seconds


@pytest.mark.parametrize("raw", [" ", "61", "60.01", "-1", "soon", "nan", "inf", "0x10"])
def test_wait_seconds__out_of_range_or_not_a_number__400_naming_wait_and_its_range(raw):
    with pytest.raises(InvalidInput) as refused:
        edge.wait_seconds(raw)
    assert refused.value.message == f"wait: must be a number of seconds from 0 to 60, got {raw!r}"
    assert refused.value.details == {"field": "wait", "maximum": edge.MAX_WAIT_SECONDS}


def test_wait_seconds__a_long_value__quoted_cut_short():
    with pytest.raises(InvalidInput) as refused:
        edge.wait_seconds("9" * 5000)
    assert len(refused.value.message) < 120


@pytest.mark.parametrize(
    ("header", "wanted"),
    [
        (None, None),
        ("", None),
        ("*/*", None),
        ("text/plain", None),
        ("application/yaml", "yaml"),
        ("application/x-yaml", "yaml"),
        ("text/yaml; charset=utf-8", "yaml"),
        ("application/vnd.veto+yaml", "yaml"),
        ("application/json", "json"),
        ("Application/JSON; charset=utf-8", "json"),
        ("application/problem+json", "json"),
        ("text/html, application/json;q=0.9, */*;q=0.8", "json"),
        # At equal preference, YAML (what the gateway answered before, in either order).
        ("application/json, application/yaml", "yaml"),
        ("application/yaml, application/json", "yaml"),
        # A stated preference wins; q=0 refuses a format outright.
        ("application/yaml;q=0.5, application/json", "json"),
        ("application/yaml;q=0, application/json;q=0.1", "json"),
        ("application/yaml;q=0", None),
        ("application/yaml;q=oops, application/json;q=0.2", "json"),
        # Not a JSON media type, although the letters are in it.
        ("application/jsonl", None),
    ],
)
def test_source_format__media_type_header__yaml_json_or_none(header, wanted):
    assert edge.source_format(header) == wanted


@pytest.mark.parametrize(
    ("body", "as_text", "refused"),
    [
        (b'{"a": "x\\u0000y"}', False, True),
        (b'{"a": "C:\\\\u0000"}', False, False),  # an escaped backslash, then the letters u0000
        (b'{"a": "C:\\\\\\u0000"}', False, True),  # an escaped backslash, then a NUL escape
        (b"rules: []\n# \x00", True, True),
        (b"rules: []\n# \x00", False, False),  # JSON read as JSON: its parser refuses raw controls
        (b"rules: []\n", True, False),
    ],
)
def test_refuse_nul__escaped_or_raw_nul__400_with_the_one_message(body, as_text, refused):
    if refused:
        with pytest.raises(InvalidInput, match="NUL character"):
            edge.refuse_nul(body, text=as_text)
    else:
        edge.refuse_nul(body, text=as_text)


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=4096)
def test_body_too_large__and_djangos_request_data_too_big__the_same_413():
    # Given the gateway's refusal and Django's own exception for a body over the limit
    refusal = edge.body_too_large()
    # Then both map to the same answer, naming the limit in force
    assert error_for_exception(refusal) == error_for_exception(RequestDataTooBig("Django's words"))
    assert error_for_exception(refusal) == (
        413,
        {
            "error": {
                "code": "payload_too_large",
                "message": "request body is larger than the 4096-byte limit",
            }
        },
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a": 1,}', "Expecting property name enclosed in double quotes (line 1, column 9)"),
        ('{"a":\n  [1, 2', "Expecting ',' delimiter (line 2, column 8)"),
        (b'{"a": Infinity}', "Infinity is not a JSON number"),
        (b"\xff\xfe\xfd", None),  # not UTF-8: the decoder's own words
        ("[" * 100_000, "the document is nested too deeply"),
    ],
)
def test_json_loads__not_json__malformed_json_naming_where(body, reason):
    with pytest.raises(InvalidInput) as refused:
        edge.json_loads(body)
    assert refused.value.code == "malformed_json"
    assert refused.value.message.startswith("request body is not valid JSON: ")
    if reason is not None:
        assert refused.value.message == f"request body is not valid JSON: {reason}"


def test_json_loads__json__its_value():
    assert edge.json_loads(b'{"a": [1, 2.5, null, "NaN"]}') == {"a": [1, 2.5, None, "NaN"]}


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (b'{"x": NaN}', True),
        (b'{"x": [1, -Infinity]}', True),
        (b'{"x": "NaN and Infinity, as text"}', False),
        (b'{"x": 1.5}', False),
    ],
)
def test_refuse_json_constants__nan_or_infinity_as_a_value__malformed_json(body, refused):
    if refused:
        with pytest.raises(InvalidInput, match="is not a JSON number"):
            edge.refuse_json_constants(body)
    else:
        edge.refuse_json_constants(body)
