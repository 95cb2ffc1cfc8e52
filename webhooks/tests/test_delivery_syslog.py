"""CEF endpoints with syslog URLs: RFC 5424 over UDP (one datagram) and over TCP with RFC 6587
octet counting, to real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.factories import TeamFactory, record_decision
from webhooks import delivery, dispatch
from webhooks.models import WebhookDelivery
from webhooks.tests.helpers import endpoint_for, sink_paused

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    with sink_paused():
        yield


def deliver_one(url: str) -> WebhookDelivery:
    team = TeamFactory(slug="payments")
    endpoint = endpoint_for(team, url=url, events=("deny",), format="cef")
    record_decision(team, decision="deny", tool_name="transfer", rule_id="no_big", severity="critical")
    dispatch.dispatch_team(team.id)
    item = WebhookDelivery.objects.get(endpoint=endpoint)
    delivery.attempt_due(item.id)
    item.refresh_from_db()
    return item


def test_syslog_udp__deny__one_rfc5424_datagram_carrying_the_cef_line():
    # Given a UDP syslog receiver
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        port = server.getsockname()[1]
        # When a denial is delivered to it
        item = deliver_one(f"syslog+udp://127.0.0.1:{port}")
        datagram, _ = server.recvfrom(65535)
    # Then one RFC 5424 message (authpriv.crit: 10 * 8 + 2 = <82>, version 1) carries the CEF line
    text = datagram.decode()
    assert text.startswith("<82>1 ")
    assert "CEF:0|" in text and "transfer" in text
    assert item.status == "delivered"


def test_syslog_tcp__deny__octet_counted_frame():
    # Given a TCP syslog receiver that reads one connection
    received: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            chunks = []
            while chunk := conn.recv(65535):
                chunks.append(chunk)
            received.append(b"".join(chunks))

    reader = threading.Thread(target=accept, daemon=True)
    reader.start()
    # When a denial is delivered to it
    item = deliver_one(f"syslog+tcp://127.0.0.1:{port}")
    reader.join(5)
    server.close()
    # Then the stream is "<length> <message>" and the length is the message's, in bytes
    (stream,) = received
    length, _, message = stream.partition(b" ")
    assert int(length) == len(message)
    assert b"CEF:0|" in message
    assert item.status == "delivered"


def test_syslog_tcp__nothing_listening__failed_attempt_retried():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    item = deliver_one(f"syslog+tcp://127.0.0.1:{port}")
    assert item.status == "pending"
    assert item.attempts.get().error
