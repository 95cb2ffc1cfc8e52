"""Syslog framing: RFC 5424 messages parsed back by a strict reading of the RFC's ABNF, and
RFC 6587 octet counting read back as a TCP receiver reads a stream."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhooks.formats import syslog
from webhooks.tests.format_messages import AT, message

# RFC 5424 section 6: HEADER SP STRUCTURED-DATA [SP MSG]; PRINTUSASCII is %d33-126.
_PRINT = r"[\x21-\x7e]"
RFC5424 = re.compile(
    rb"<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) "
    rb"(?P<timestamp>-|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)) "
    rb"(?P<hostname>" + _PRINT.encode() + rb"{1,255}) "
    rb"(?P<app>" + _PRINT.encode() + rb"{1,48}) "
    rb"(?P<procid>" + _PRINT.encode() + rb"{1,128}) "
    rb"(?P<msgid>" + _PRINT.encode() + rb"{1,32}) "
    rb"(?P<sd>-|(?:\[[^\]]*\])+)"
    rb"(?: (?P<msg>.*))?\Z",
    re.DOTALL,
)


def _parse(frame: bytes) -> dict[str, bytes]:
    matched = RFC5424.match(frame)
    assert matched, frame
    assert 0 <= int(matched["pri"]) <= 191
    return matched.groupdict()


def _read_octet_counted(stream: bytes) -> list[bytes]:
    """RFC 6587 3.4.1: MSG-LEN SP SYSLOG-MSG, repeated; MSG-LEN has no leading zero."""
    frames = []
    while stream:
        length, space, rest = stream.partition(b" ")
        assert space and re.fullmatch(rb"[1-9]\d*", length), stream[:20]
        frames.append(rest[: int(length)])
        assert len(frames[-1]) == int(length), "stream ends inside a frame"
        stream = rest[int(length) :]
    return frames


def test_rfc5424__cef_line__header_fields_as_decided() -> None:
    # Given a high-severity deny's CEF line
    msg = message("deny", severity="high")
    # When it is framed for syslog
    parsed = _parse(
        syslog.message("CEF:0|Veto|Veto Cloud|0.1.0|deny|Tool call denied|8|", message=msg, hostname="veto-1")
    )
    # Then PRI is authpriv (10) with err (3), version 1, the event's time and name, no SD, no BOM
    assert int(parsed["pri"]) == 10 * 8 + 3
    assert parsed["version"] == b"1"
    assert parsed["timestamp"] == b"2026-12-03T12:00:05.250000Z"
    assert (parsed["hostname"], parsed["app"], parsed["procid"], parsed["msgid"]) == (
        b"veto-1",
        b"veto-cloud",
        b"-",
        b"deny",
    )
    assert parsed["sd"] == b"-"
    assert parsed["msg"] == b"CEF:0|Veto|Veto Cloud|0.1.0|deny|Tool call denied|8|"


@pytest.mark.parametrize(("severity", "expected"), list(syslog.SEVERITY.items()))
def test_rfc5424__each_severity__mapped_below_alert(severity: str, expected: int) -> None:
    # Given a message of each severity
    parsed = _parse(syslog.message("x", message=message("deny", severity=severity), hostname="h"))
    # Then its syslog severity is the documented one, never emergency (0) or alert (1)
    assert int(parsed["pri"]) % 8 == expected >= 2


def test_rfc5424__absent_and_unprintable_fields__nilvalue_and_underscores() -> None:
    # Given an empty hostname, no timestamp, a message id with a space and one too long
    frame = syslog.rfc5424(
        "m", hostname="", app_name="veto cloud", timestamp=None, msgid="x" * 40, severity=6
    )
    # When it is parsed
    parsed = _parse(frame)
    # Then absent is NILVALUE, a space is replaced, and the RFC's lengths hold
    assert parsed["hostname"] == b"-" and parsed["timestamp"] == b"-"
    assert parsed["app"] == b"veto_cloud"
    assert parsed["msgid"] == b"x" * 32


def test_rfc5424__time_in_another_zone__written_in_utc() -> None:
    # Given a time written at UTC+5
    when = AT.astimezone(timezone(timedelta(hours=5)))
    # Then the header carries the same instant in UTC
    parsed = _parse(syslog.rfc5424("m", hostname="h", app_name="a", timestamp=when, msgid="m", severity=6))
    assert datetime.fromisoformat(parsed["timestamp"].decode()) == AT


def test_rfc5424__bom_asked_for__precedes_the_message() -> None:
    parsed = _parse(
        syslog.rfc5424("é", hostname="h", app_name="a", timestamp=AT, msgid="m", severity=6, bom=True)
    )
    assert parsed["msg"] == b"\xef\xbb\xbf" + "é".encode()


@pytest.mark.parametrize(("severity", "facility"), [(8, 10), (-1, 10), (3, 24)])
def test_rfc5424__out_of_range_priority__refused(severity: int, facility: int) -> None:
    with pytest.raises(ValueError, match="severity must be 0-7"):
        syslog.rfc5424(
            "m", hostname="h", app_name="a", timestamp=AT, msgid="m", severity=severity, facility=facility
        )


@settings(max_examples=300, deadline=None)
@given(
    line=st.text(),
    hostname=st.text(max_size=300),
    msgid=st.text(max_size=40),
    severity=st.integers(0, 7),
    when=st.datetimes(timezones=st.just(UTC)),
)
def test_rfc5424__any_fields__parses_back(
    line: str, hostname: str, msgid: str, severity: int, when: datetime
) -> None:
    # Given any message line (UTF-8, newlines and all) and any header values
    frame = syslog.rfc5424(
        line, hostname=hostname, app_name="veto-cloud", timestamp=when, msgid=msgid, severity=severity
    )
    # Then the frame is RFC 5424, and carries the line and the instant unchanged
    parsed = _parse(frame)
    assert parsed["msg"].decode() == line
    assert datetime.fromisoformat(parsed["timestamp"].decode()) == when
    assert int(parsed["pri"]) == 80 + severity


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8))
def test_octet_counted__frames_on_one_stream__read_back_whole(frames: list[bytes]) -> None:
    # Given frames holding spaces, newlines and digits, sent back to back on one TCP stream
    stream = b"".join(syslog.octet_counted(frame) for frame in frames)
    # When a receiver reads the stream by the counts
    # Then it gets each frame whole, none split at a newline or merged
    assert _read_octet_counted(stream) == frames


def test_octet_counted__length_in_bytes_not_characters() -> None:
    # Given a frame of non-ASCII text
    frame = syslog.rfc5424("é😀", hostname="h", app_name="a", timestamp=AT, msgid="m", severity=6)
    # Then the count is its UTF-8 length
    assert syslog.octet_counted(frame) == str(len(frame)).encode() + b" " + frame
    assert len(frame) > len(frame.decode())
