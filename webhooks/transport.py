"""Putting a rendered webhook on the wire: an HTTP POST, or a syslog message (UDP or TCP).

Every send goes to the address the SSRF guard checked (webhooks/ssrf.py ``resolve``): the
request's URL carries that IP, with the name in the Host header and as TLS SNI (so the
certificate is still checked against the name), and redirects are never followed (a 3xx is an
answer like any other non-2xx). Only the first ``READ_MAX_BYTES`` of an answer are read.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from webhooks import ssrf
from webhooks.formats.syslog import octet_counted

# Enough for the snippet the log keeps (models.RESPONSE_SNIPPET_MAX) with room for multibyte text.
READ_MAX_BYTES = 8 * 1024
# HTTP clients kept for reuse (keep-alive), one per (scheme, host, address, port): a pooled
# connection is never shared between two names (its TLS session was checked for one).
CLIENTS_MAX = 64


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back: a status (None when nothing did: refused, timed out, blocked) and the
    start of the body, or the error."""

    status_code: int | None
    latency_ms: float
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
    error: str = ""


class _Clients:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: OrderedDict[tuple[str, str, str, int, float], httpx.Client] = OrderedDict()

    def get(self, target: ssrf.Target, timeout: float) -> httpx.Client:
        key = (target.scheme, target.host, target.address, target.port, timeout)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            client = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)
            self._clients[key] = client
            while len(self._clients) > CLIENTS_MAX:
                _, old = self._clients.popitem(last=False)
                old.close()
            return client


_clients = _Clients()


def post(url: str, *, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
    """POST ``body`` to ``url`` (http/https) at its checked address."""
    started = time.perf_counter()
    try:
        target = ssrf.resolve(url)
    except ssrf.WebhookURLRefused as exc:
        return Answer(None, _ms(started), error=exc.message)
    request_url = httpx.URL(url).copy_with(host=target.address)
    default_port = ssrf.DEFAULT_PORTS[target.scheme]
    host = f"[{target.host}]" if ":" in target.host else target.host
    sent = {**headers, "Host": host if target.port == default_port else f"{host}:{target.port}"}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    client = _clients.get(target, timeout)
    try:
        with client.stream(
            "POST", request_url, content=body, headers=sent, extensions=extensions
        ) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= READ_MAX_BYTES:
                    break
            text = b"".join(chunks)[:READ_MAX_BYTES].decode(response.encoding or "utf-8", errors="replace")
            return Answer(response.status_code, _ms(started), dict(response.headers), text)
    except httpx.TimeoutException:
        return Answer(None, _ms(started), error=f"timed out after {timeout:g} s")
    except httpx.HTTPError as exc:
        return Answer(None, _ms(started), error=f"{type(exc).__name__}: {exc}"[:500])


def send_syslog(url: str, *, message: bytes, timeout: float) -> Answer:
    """Send one syslog message (already an RFC 5424 line) to a syslog+udp:// or syslog+tcp://
    URL at its checked address; over TCP with RFC 6587 octet counting. There is no answer to
    read: a send that did not fail is delivered (status None, no error)."""
    started = time.perf_counter()
    try:
        target = ssrf.resolve(url)
    except ssrf.WebhookURLRefused as exc:
        return Answer(None, _ms(started), error=exc.message)
    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
    try:
        if target.scheme == "syslog+udp":
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.sendto(message, (target.address, target.port))
        else:
            with socket.create_connection((target.address, target.port), timeout=timeout) as sock:
                sock.sendall(octet_counted(message))
    except OSError as exc:
        return Answer(None, _ms(started), error=f"{type(exc).__name__}: {exc}"[:500])
    return Answer(None, _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
