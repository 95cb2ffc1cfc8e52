"""Syslog framing for the ``cef`` format when the endpoint is a syslog receiver
(``syslog+udp://`` or ``syslog+tcp://``): RFC 5424 messages, and RFC 6587 octet counting for TCP.

Decisions, each because of what receivers do:

- Facility 10, "security/authorization" (``authpriv``): these are authorization decisions,
  and every syslog daemon knows the facility by name; ``local0``-``local7`` are often already
  taken on a site. PRI = 10 * 8 + severity.
- Severity from the message's: critical 2 (crit), high 3 (err), medium 4 (warning), low 5
  (notice), info 6 (info). Nothing is "emergency" or "alert": those mean the system is unusable.
- No BOM before the message, though RFC 5424 asks for one to mark UTF-8: CEF receivers
  (ArcSight, QRadar, Sentinel's agent) look for ``CEF:`` at the start of MSG, and a BOM hides
  it. The bytes are UTF-8 all the same (the RFC's MSG-ANY). ``bom=True`` adds it.
- No structured data (NILVALUE ``-``): the CEF line carries every field, and SD-IDs of our
  own would need an IANA enterprise number.
- Header fields are PRINTUSASCII (33-126) and capped at the RFC's lengths; anything else is
  replaced by ``_``, an empty one is NILVALUE. The timestamp is UTC with microseconds (the
  RFC allows 6 fraction digits), the event's time, so a retry carries the same one.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from webhooks.messages import WebhookMessage

NILVALUE = "-"
FACILITY_AUTHPRIV = 10
SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
APP_NAME = "veto-cloud"
BOM = b"\xef\xbb\xbf"

# RFC 5424 section 6: the header fields' maximum lengths.
HOSTNAME_MAX, APP_NAME_MAX, PROCID_MAX, MSGID_MAX = 255, 48, 128, 32


def rfc5424(
    line: str,
    *,
    hostname: str,
    app_name: str,
    timestamp: datetime | None,
    msgid: str,
    severity: int,
    facility: int = FACILITY_AUTHPRIV,
    procid: str = "",
    bom: bool = False,
) -> bytes:
    """``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG``, as UTF-8."""
    if not 0 <= severity <= 7 or not 0 <= facility <= 23:
        raise ValueError(f"syslog severity must be 0-7 and facility 0-23, not {severity} and {facility}")
    header = " ".join(
        [
            f"<{facility * 8 + severity}>1",
            _timestamp(timestamp),
            _field(hostname, HOSTNAME_MAX),
            _field(app_name, APP_NAME_MAX),
            _field(procid, PROCID_MAX),
            _field(msgid, MSGID_MAX),
            NILVALUE,  # STRUCTURED-DATA
        ]
    )
    return header.encode("ascii") + b" " + (BOM if bom else b"") + line.encode()


def octet_counted(frame: bytes) -> bytes:
    """RFC 6587 octet counting for TCP: ``MSG-LEN SP SYSLOG-MSG``, the length in bytes."""
    return b"%d %s" % (len(frame), frame)


def message(line: str, *, message: WebhookMessage, hostname: str | None = None) -> bytes:
    """The RFC 5424 message (not framed) carrying one CEF ``line`` of ``message``."""
    return rfc5424(
        line,
        hostname=socket.gethostname() if hostname is None else hostname,
        app_name=APP_NAME,
        timestamp=message.occurred_at,
        msgid=message.event,
        severity=SEVERITY.get(message.severity, SEVERITY["info"]),
    )


def _field(value: str, limit: int) -> str:
    printable = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in value[:limit])
    return printable or NILVALUE


def _timestamp(when: datetime | None) -> str:
    if when is None:
        return NILVALUE
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    # isoformat, not strftime: %Y writes the year 999 as "999", and the RFC wants 4 digits.
    return when.isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"
