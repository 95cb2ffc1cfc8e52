"""The live server's HTTP limits, seen from plain sockets: an oversized body's 413 always reaches the
client, and connections that idle or trickle their request are closed after the documented timeouts
(veto_cloud/http_protocol.py) while other clients are still served."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import LiveServer, start_asgi_server, stop_processes

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
KEEP_ALIVE = 1.0
SLACK = 1.5  # scheduling on a loaded 2-core machine


@pytest.fixture(scope="module")
def server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    process, live = start_asgi_server(
        tmp_path_factory.mktemp("http-limits") / "server.log",
        VETO_HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        VETO_HTTP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        VETO_HTTP_KEEPALIVE_TIMEOUT_SECONDS=str(KEEP_ALIVE),
    )
    yield live
    stop_processes(process)


def _address(server: LiveServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _post_with_connection_close(server: LiveServer, path: str, size: int) -> tuple[int, dict]:
    """What urllib does: ``Connection: close``, the whole body written before the answer is read."""
    connection = http.client.HTTPConnection(*_address(server), timeout=20)
    try:
        body = b'{"tool_name": "' + b"a" * size + b'"}'
        headers = {"Content-Type": "application/json", "Connection": "close", "X-Veto-API-Key": "vk_x"}
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _seconds_until_closed(
    sock: socket.socket, *, trickle: bytes = b"", every: float = 1.0, limit: float
) -> float:
    """Send ``trickle`` one byte every ``every`` seconds (then nothing) until the server closes."""
    started = time.monotonic()
    sock.settimeout(0.05)
    next_send = started
    pending = list(trickle)
    while time.monotonic() - started < limit:
        if pending and time.monotonic() >= next_send:
            try:
                sock.send(bytes([pending.pop(0)]))
            except OSError:
                return time.monotonic() - started
            next_send += every
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return float("inf")


@pytest.mark.parametrize("path", ["/v1/tools/validate", "/v1/validate", "/v1/policies", "/v1/rule-sets"])
def test_oversized_body__plain_client_with_connection_close__reads_the_json_413_ten_times_of_ten(
    server: LiveServer, path: str
) -> None:
    # Given a 3 MB body (the limit is 1 MB) sent the way urllib sends it
    # When a plain client posts it ten times on the gateway's and on Django's paths
    answers = [_post_with_connection_close(server, path, 3 * 1024 * 1024) for _ in range(10)]

    # Then every try reads the JSON 413 (no reset before the answer could be read)
    assert [status for status, _ in answers] == [413] * 10
    assert {body["error"]["code"] for _, body in answers} == {"payload_too_large"}


def test_oversized_body__past_the_drain_bound__still_reads_the_413(server: LiveServer) -> None:
    # Given a 40 MB body: more than the server reads and discards before answering
    # When a plain client posts it with Connection: close
    status, body = _post_with_connection_close(server, "/v1/tools/validate", 40 * 1024 * 1024)

    # Then it still reads the 413 (the server half-closes and discards instead of resetting)
    assert status == 413 and body["error"]["code"] == "payload_too_large"


def test_oversized_body__keep_alive__the_connection_serves_the_next_request(server: LiveServer) -> None:
    # Given a kept-alive connection that sent an oversized body and read its 413
    connection = http.client.HTTPConnection(*_address(server), timeout=20)
    connection.request("POST", "/v1/tools/validate", body=b"x" * (2 * 1024 * 1024))
    first = connection.getresponse()
    first.read()

    # When it sends the next request on the same connection
    connection.request("GET", "/healthz")
    second = connection.getresponse()

    # Then that one is answered as usual
    assert (first.status, second.status, second.read()) == (413, 200, b'{"status":"ok"}')
    connection.close()


def test_slowloris__headers_trickled_one_byte_a_second__closed_after_the_header_timeout(
    server: LiveServer,
) -> None:
    # Given a client that sends its request line and headers one byte a second, for ever
    sock = socket.create_connection(_address(server))
    trickle = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 60
    served: list[int] = []

    def others() -> None:
        # Meanwhile, other clients are served as usual
        while len(served) < 5:
            served.append(httpx.get(f"{server.url}/healthz", timeout=5).status_code)
            time.sleep(0.1)

    helper = threading.Thread(target=others)
    helper.start()

    # When the server has had the header timeout to read them
    closed_after = _seconds_until_closed(sock, trickle=trickle, every=1.0, limit=HEADER_TIMEOUT + 10)
    helper.join(timeout=10)
    sock.close()

    # Then it closed the connection after about the header timeout, and served the others meanwhile
    assert HEADER_TIMEOUT - 0.2 <= closed_after <= HEADER_TIMEOUT + SLACK
    assert served == [200] * 5


def test_slowloris__many_trickling_connections__closed_and_the_server_still_answers(
    server: LiveServer,
) -> None:
    # Given 50 connections that each sent the start of a request and then trickle a header's value
    socks = [socket.create_connection(_address(server)) for _ in range(50)]
    for sock in socks:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.setblocking(False)
    started = time.monotonic()
    open_socks = set(socks)

    # When the header timeout has passed
    while open_socks and time.monotonic() - started < HEADER_TIMEOUT + SLACK + 1:
        for sock in list(open_socks):
            try:
                if sock.recv(65536) == b"":
                    open_socks.discard(sock)
                    continue
            except BlockingIOError:
                pass
            except OSError:
                open_socks.discard(sock)
                continue
            try:
                sock.send(b"a")
            except BlockingIOError:
                pass
            except OSError:
                open_socks.discard(sock)
        time.sleep(0.2)
    for sock in socks:
        sock.close()

    # Then every one of them was closed by then, and a new client is answered at once
    assert not open_socks, f"{len(open_socks)} of 50 trickling connections still open"
    assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200


def test_slow_body__trickled_one_byte_a_second__json_408_and_closed_after_the_body_timeout(
    server: LiveServer,
) -> None:
    # Given a client whose headers announce a 100-byte body that it then sends one byte a second
    sock = socket.create_connection(_address(server))
    sock.sendall(
        b"POST /v1/tools/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    started = time.monotonic()
    received = b""
    sock.settimeout(0.05)
    pending = list(b"a" * 100)
    next_send = started
    closed_after = float("inf")

    # When it keeps trickling past the body timeout
    while time.monotonic() - started < BODY_TIMEOUT + 10:
        if pending and time.monotonic() >= next_send:
            try:
                sock.send(bytes([pending.pop(0)]))
            except OSError:
                closed_after = time.monotonic() - started
                break
            next_send += 1.0
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            closed_after = time.monotonic() - started
            break
        if chunk == b"":
            closed_after = time.monotonic() - started
            break
        received += chunk
    sock.close()

    # Then the server answered a JSON 408 and closed after about the body timeout
    assert BODY_TIMEOUT - 0.2 <= closed_after <= BODY_TIMEOUT + SLACK
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), received
    assert json.loads(body)["error"]["code"] == "request_timeout"


def test_idle_connection__nothing_ever_sent__closed_after_the_header_timeout(server: LiveServer) -> None:
    # Given a client that connects and sends nothing
    sock = socket.create_connection(_address(server))

    # When it waits
    closed_after = _seconds_until_closed(sock, limit=HEADER_TIMEOUT + 10)
    sock.close()

    # Then the server closes it after about the header timeout
    assert HEADER_TIMEOUT - 0.2 <= closed_after <= HEADER_TIMEOUT + SLACK


def test_idle_connection__after_a_response__closed_after_the_keep_alive_timeout(server: LiveServer) -> None:
    # Given a client that made one request on a kept-alive connection and then idles
    sock = socket.create_connection(_address(server))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sock.settimeout(5)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")

    # When it waits
    closed_after = _seconds_until_closed(sock, limit=KEEP_ALIVE + 10)
    sock.close()

    # Then the server closes it after about the keep-alive timeout
    assert closed_after <= KEEP_ALIVE + SLACK
