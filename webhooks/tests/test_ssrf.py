"""The SSRF guard: refused addresses, the address actually connected to, no redirects. Runs
with VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS off except where a test says otherwise."""

from __future__ import annotations

import socket

import pytest

from webhooks import ssrf, transport
from webhooks.tests.receiver import receiver


@pytest.fixture(autouse=True)
def _guard_on(settings):
    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = False


def fake_dns(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    """Resolve the given names to the given addresses; returns the names asked, in order."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            asked.append(host)
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://[::1]:8080/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://169.254.10.10/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://100.127.255.254/", "carrier-grade NAT"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.251/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "private"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped form of a loopback"),
        ("http://[::ffff:169.254.169.254]/", "IPv4-mapped form of a cloud metadata"),
        ("http://[fc00::1]/", "private"),
        ("syslog+udp://10.0.0.5:514", "private"),
    ],
)
def test_check_url__non_public_address__refused_saying_why(url, why):
    with pytest.raises(ssrf.WebhookURLRefused) as refused:
        ssrf.check_url(url)
    assert why in refused.value.message
    assert refused.value.details["field"] == "url"


@pytest.mark.parametrize(
    "url",
    ["ftp://93.184.215.14/", "https://user:pw@93.184.215.14/", "syslog+tcp://93.184.215.14", "https:///x", "http://93.184.215.14:99999/"],
)
def test_check_url__malformed_or_other_scheme__refused(url):
    with pytest.raises(ssrf.WebhookURLRefused):
        ssrf.check_url(url)


def test_check_url__public_addresses__accepted():
    ssrf.check_url("https://93.184.215.14/hook")
    ssrf.check_url("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook")
    ssrf.check_url("syslog+tcp://93.184.215.14:6514")


def test_check_url__name_resolving_to_private__refused(monkeypatch):
    # Given a name whose DNS answer holds one private address among public ones
    fake_dns(monkeypatch, {"hooks.example.com": ["93.184.215.14", "10.0.0.7"]})
    # Then it is refused, naming the address
    with pytest.raises(ssrf.WebhookURLRefused) as refused:
        ssrf.check_url("https://hooks.example.com/x")
    assert "10.0.0.7" in refused.value.message


def test_check_url__name_that_does_not_resolve__unresolved_error():
    with pytest.raises(ssrf.WebhookHostUnresolved):
        ssrf.check_url("https://no-such-host.invalid/x")


def test_check_url__allow_private_networks__lets_loopback_through(settings):
    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    assert ssrf.resolve("http://127.0.0.1:9/").address == "127.0.0.1"


def test_post__rebinding_name__connects_to_the_address_checked_once_with_host_header(monkeypatch, settings):
    # Given a receiver on loopback (allowed for this test) and a name that resolves to it once,
    # then would resolve elsewhere (a rebinding DNS)
    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    with receiver([(200, {})]) as hooks:
        asked = fake_dns(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
        # When a webhook is posted to the name
        answer = transport.post(
            f"http://hooks.example.com:{hooks.port}/hook", body=b"{}", headers={"X-A": "1"}, timeout=5
        )
    # Then the name was resolved once, the request reached the checked address with the name as Host
    assert answer.status_code == 200
    assert asked == ["hooks.example.com"]
    assert hooks.requests[0].headers["host"] == f"hooks.example.com:{hooks.port}"


def test_post__guard_on__loopback_receiver_never_contacted():
    # Given a receiver on loopback and the guard on
    with receiver([(200, {})]) as hooks:
        answer = transport.post(hooks.url, body=b"{}", headers={}, timeout=5)
    # Then nothing was sent, and the answer says why
    assert answer.status_code is None and "loopback" in answer.error
    assert hooks.requests == []


def test_post__redirect__not_followed(settings):
    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    with receiver([(307, {"Location": "http://169.254.169.254/latest/"}), (200, {})]) as hooks:
        answer = transport.post(hooks.url, body=b"{}", headers={}, timeout=5)
    assert answer.status_code == 307
    assert len(hooks.requests) == 1


def _self_signed(tmp_path, name: str):
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_post__https_name__tls_sni_is_the_name_while_connecting_to_the_checked_address(monkeypatch, settings, tmp_path):
    # Given a TLS server on loopback with a certificate for hooks.example.com that records the SNI
    # it is asked for, and the name resolving to that loopback address (guard lifted for loopback)
    import ssl
    import threading

    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    cert, key = _self_signed(tmp_path, "hooks.example.com")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    asked: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: asked.append(name)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def accept() -> None:
        conn, _ = server.accept()
        try:
            context.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            pass  # the client refuses the self-signed certificate: the SNI was sent before that

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    fake_dns(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
    # When a webhook is posted to https://hooks.example.com:<port>/
    answer = transport.post(f"https://hooks.example.com:{port}/hook", body=b"{}", headers={}, timeout=5)
    thread.join(5)
    server.close()
    # Then the TLS handshake named the host (not the IP), and the certificate was checked (this one
    # is not trusted, so nothing was sent)
    assert asked == ["hooks.example.com"]
    assert answer.status_code is None and "CERTIFICATE_VERIFY_FAILED" in answer.error
