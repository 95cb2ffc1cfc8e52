"""The ``cef`` format: one ArcSight CEF line per event, for a SIEM, by HTTP POST (the body,
``text/plain``) or in a syslog message (webhooks/formats/syslog.py).

``CEF:0|Veto|Veto Cloud|<version>|<event>|<name>|<severity>|<extension>``

Escaping, as "Implementing ArcSight CEF" states it: in the header, ``\\`` and ``|``; in the
extension, ``\\``, ``=`` and newlines (``\\n``, ``\\r``), and not ``|``. A header field holds
no newline (it is replaced by a space). Other control characters become U+FFFD, since
line-based receivers and syslog relays choke on them; values are stripped of the spaces
around them, which receivers trim anyway; an empty value is left out, not sent as ``key=``.
Each value is clipped to the spec's length for its key, counted before escaping.

Severity (0-10): info 1, low 3, medium 5, high 8, critical 10 (CEF reads 0-3 as low, 4-6
medium, 7-8 high, 9-10 very high, so each of ours lands in its own band).

Keys: ``rt`` (the event's time, ms since the epoch), ``cat`` (decision / approval / policy /
webhook, or test), ``act`` (the decision, the approval's status, publish / rollback, or
disable), ``suser`` (who acted: the approver, the publisher, else the agent), ``msg`` (the
summary), ``reason`` (the rule's reason, or why an endpoint was disabled),
``requestClientApplication`` (the agent), ``destinationServiceName`` (a disabled endpoint),
``request`` (the dashboard link), ``externalId`` (the webhook id: the same on every retry, so a
SIEM can drop a duplicate), and labelled custom fields: cs1 Tool, cs2 Rule, cs3 Team, cs4
Approval ID, cs5 Decision ID, cs6 Environment, flexString1 Rule ID, flexString2 Model, cn1
Policy Version.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from importlib import metadata

from webhooks.formats.text import clip, units
from webhooks.messages import WebhookMessage

VENDOR = "Veto"
PRODUCT = "Veto Cloud"
SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
NAMES = {
    "deny": "Tool call denied",
    "require_approval": "Tool call awaits approval",
    "budget_exceeded": "Budget or rate limit exceeded",
    "approval.resolved": "Approval resolved",
    "approval.expired": "Approval expired",
    "policy.published": "Policy published",
    "webhook.failed": "Webhook endpoint disabled",
}
# The spec's lengths for the keys we write (Implementing ArcSight CEF, extension dictionary).
LIMITS = {
    "act": 63,
    "cat": 1023,
    "suser": 1023,
    "msg": 1023,
    "reason": 1023,
    "request": 1023,
    "requestClientApplication": 1023,
    "destinationServiceName": 1023,
    "externalId": 40,
    **{f"cs{n}": 4000 for n in range(1, 7)},
    **{f"cs{n}Label": 1023 for n in range(1, 7)},
    "flexString1": 1023,
    "flexString2": 1023,
    "flexString1Label": 128,
    "flexString2Label": 128,
    "cn1Label": 1023,
}
HEADER_LIMITS = {"vendor": 63, "product": 63, "version": 31, "signature": 1023, "name": 512}
_KINDS = {
    "approval.resolved": "approval",
    "approval.expired": "approval",
    "policy.published": "policy",
    "webhook.failed": "webhook",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HEADER_ESCAPES = {"\\": "\\\\", "|": "\\|", "\n": " ", "\r": " "}
_EXTENSION_ESCAPES = {"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"}


def _device_version() -> str:
    try:
        return metadata.version("veto-cloud")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "0"


DEVICE_VERSION = _device_version()


def line(message: WebhookMessage, *, webhook_id: str) -> str:
    """The CEF line (no line ending) for ``message``."""
    name = NAMES.get(message.event, message.event)
    if message.policy and message.policy.kind == "rollback":
        name = "Policy rolled back"
    header = [
        _header(VENDOR, HEADER_LIMITS["vendor"]),
        _header(PRODUCT, HEADER_LIMITS["product"]),
        _header(DEVICE_VERSION, HEADER_LIMITS["version"]),
        _header(message.event, HEADER_LIMITS["signature"]),
        _header(f"[Test] {name}" if message.test else name, HEADER_LIMITS["name"]),
        str(SEVERITY.get(message.severity, SEVERITY["info"])),
    ]
    extension = " ".join(f"{key}={value}" for key, value in _pairs(message, webhook_id=webhook_id))
    return "CEF:0|" + "|".join(header) + "|" + extension


def _pairs(message: WebhookMessage, *, webhook_id: str) -> list[tuple[str, str]]:
    decision, approval, policy, webhook = message.decision, message.approval, message.policy, message.webhook
    act = ""
    if approval and message.event != "require_approval":
        act = approval.status
    elif decision:
        act = decision.decision
    elif policy:
        act = policy.kind
    elif webhook:
        act = "disable"
    kind = _KINDS.get(message.event, "decision")
    # Who acted: the approver of an approval (nobody, for an expiry), the publisher of a
    # policy, else the agent that made the call.
    actor = {
        "approval": approval.decided_by if approval else "",
        "policy": policy.published_by if policy else "",
        "webhook": "",
    }.get(kind, decision.agent_id if decision else "")
    link = next(
        (message.links[key] for key in ("approval", "decision", "policy") if message.links.get(key)), ""
    )
    values: list[tuple[str, str]] = [
        ("rt", str((_utc(message.occurred_at) - _EPOCH) // timedelta(milliseconds=1))),
        ("cat", "test" if message.test else kind),
        ("act", act),
        ("suser", actor),
        ("msg", message.summary),
        ("reason", (decision.reason if decision else "") or (webhook.reason if webhook else "")),
        ("requestClientApplication", decision.agent_id if decision else ""),
        ("destinationServiceName", webhook.endpoint_name if webhook else ""),
        # A clipped link leads nowhere: too long a link is left out.
        ("request", link if units(link) <= LIMITS["request"] else ""),
        ("externalId", webhook_id),
    ]
    labelled = [
        ("cs1", "Tool", (decision.tool_name if decision else "") or (approval.tool_name if approval else "")),
        (
            "cs2",
            "Rule",
            (decision.rule_name or decision.rule_id if decision else "")
            or (approval.rule_name if approval else ""),
        ),
        ("cs3", "Team", message.team_slug),
        ("cs4", "Approval ID", approval.approval_id if approval else ""),
        ("cs5", "Decision ID", decision.decision_id if decision else ""),
        ("cs6", "Environment", decision.environment if decision else ""),
        ("flexString1", "Rule ID", decision.rule_id if decision else ""),
        ("flexString2", "Model", decision.model if decision else ""),
    ]
    for key, label, value in labelled:
        values += [(key, value), (f"{key}Label", label)] if _clean(value) else []
    if policy:
        values += [("cn1", str(policy.version)), ("cn1Label", "Policy Version")]
    pairs = []
    for key, value in values:
        cleaned = _clean(value)
        if cleaned:
            limit = LIMITS.get(key)
            pairs.append((key, _extension(clip(cleaned, limit) if limit else cleaned)))
    return pairs


def _clean(value: str) -> str:
    return _CONTROL.sub("\ufffd", value).strip(" ")


def _header(value: str, limit: int) -> str:
    return "".join(_HEADER_ESCAPES.get(ch, ch) for ch in clip(_clean(value), limit))


def _extension(value: str) -> str:
    return "".join(_EXTENSION_ESCAPES.get(ch, ch) for ch in value)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
