"""The SSRF guard: a webhook goes only to a public address, and to the very address checked.

A team admin chooses the URL, so without a guard a webhook is a way to make the control plane
send requests into its own network (the database, Redis, a cloud's metadata service at
169.254.169.254). ``resolve`` resolves the host once, refuses it if any address it resolves to
is not public (loopback, private, link-local, CGNAT 100.64/10, metadata, unspecified,
multicast, reserved, and those written as IPv4-mapped IPv6), and returns the address to connect
to: the transport (webhooks/transport.py) connects to that IP, sending the host name as the
Host header and TLS SNI, so a DNS answer that changes between check and connect (DNS
rebinding) cannot redirect it. Redirects are never followed.

``VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS=1`` lifts the address check (tests, local demos); the
URL's form is still checked and the host still resolved once.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

from common.errors import InvalidInput

HTTP_SCHEMES = ("http", "https")
SYSLOG_SCHEMES = ("syslog+udp", "syslog+tcp")
DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_METADATA = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class WebhookURLRefused(InvalidInput):
    """The URL is malformed, or its host is (or resolves to) an address webhooks may not reach."""

    code = "webhook_url_refused"


class WebhookHostUnresolved(WebhookURLRefused):
    """The host name does not resolve (now: DNS may be briefly away at delivery time)."""

    code = "webhook_host_unresolved"


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # as written in the URL (the Host header and the TLS SNI)
    port: int
    address: str  # the checked IP to connect to


def check_url(url: str) -> None:
    """Raise ``WebhookURLRefused`` (a 400 with the reason) unless ``url`` is one webhooks may
    be sent to now: http(s), or syslog+udp/syslog+tcp with a port, whose host resolves only to
    public addresses."""
    resolve(url)


def resolve(url: str) -> Target:
    """The address to send ``url``'s request to, checked; see the module."""
    parts = _parts(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    port = _port(parts, scheme)
    literal = _literal(host)
    if literal is not None:
        candidates: list[IPAddress] = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise WebhookHostUnresolved(
                f"the webhook URL's host {host!r} does not resolve", details={"field": "url"}
            ) from exc
        candidates = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in candidates:
                candidates.append(address)
        if not candidates:
            raise WebhookHostUnresolved(
                f"the webhook URL's host {host!r} does not resolve", details={"field": "url"}
            )
    if not settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        # Every address, not only the first: which one a connection would use is not ours to
        # predict, and a host that answers with one private address among public ones is a trap.
        for address in candidates:
            why = refusal(address)
            if why:
                shown = host if literal is not None else f"{host!r}, which resolves to {address},"
                raise WebhookURLRefused(
                    f"the webhook URL's host {shown} is {why}; webhooks go only to public addresses",
                    details={"field": "url", "address": str(address)},
                )
    return Target(scheme=scheme, host=host, port=port, address=str(candidates[0]))


def refusal(address: IPAddress) -> str:
    """Why webhooks may not go to ``address`` ("" when they may)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            why = refusal(mapped)
            return f"an IPv4-mapped form of {why}" if why else ""
        if address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            why = refusal(embedded)
            return f"a NAT64 form of {why}" if why else ""
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT (100.64.0.0/10) address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return ""


def _parts(url: str) -> SplitResult:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError as exc:
        raise WebhookURLRefused(
            f"the webhook URL {url!r} is malformed: {exc}", details={"field": "url"}
        ) from exc
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES + SYSLOG_SCHEMES:
        raise WebhookURLRefused(
            f"the webhook URL must start with https://, http://, syslog+udp:// or syslog+tcp:// (got {url!r})",
            details={"field": "url"},
        )
    if not parts.hostname:
        raise WebhookURLRefused(f"the webhook URL {url!r} names no host", details={"field": "url"})
    if parts.username is not None or parts.password is not None:
        raise WebhookURLRefused(
            "the webhook URL must not carry a user name or password (use the signing secret)",
            details={"field": "url"},
        )
    return parts


def _port(parts: SplitResult, scheme: str) -> int:
    if parts.port is not None:
        return parts.port
    if scheme in DEFAULT_PORTS:
        return DEFAULT_PORTS[scheme]
    raise WebhookURLRefused(
        f"a syslog webhook URL needs a port ({scheme}://host:514, say)", details={"field": "url"}
    )


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # Forms inet_aton accepts and some resolvers honour (2130706433, 0x7f.1, 127.1): refuse to
    # guess and read them as the IPv4 address they spell.
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None
