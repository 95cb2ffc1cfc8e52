"""Production settings: with the environment production.env.example documents (README, "Production
settings"), Django's deployment checks are clean; pages carry the CSP and the usual headers; and
HTTPS (redirect, HSTS, Secure cookies) is driven by the environment, behind a proxy too."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import httpx
import pytest
from django.test import Client

from conftest import BASE_DIR, start_asgi_server, stop_processes

PRODUCTION_ENV = BASE_DIR / "production.env.example"


def production_environment(**overrides: str) -> dict[str, str]:
    """The documented production environment, its blanks filled in the way the file says."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}
    for line in PRODUCTION_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    assert env["SECRET_KEY"] == "", "the example must not ship a usable secret key"
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    env.update(overrides)
    return env


def check_deploy(env: dict[str, str], tmp_path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env={**env, "VETO_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy__documented_production_environment__no_issues(tmp_path):
    # Given the production environment the README documents
    env = production_environment()
    # When Django's deployment checks run on it, failing on any warning
    result = check_deploy(env, tmp_path)
    # Then they pass with nothing to report
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy__without_https__warns_about_hsts_redirect_and_cookies(tmp_path):
    # Given the same environment served over plain HTTP
    env = production_environment(VETO_HTTPS="0")
    # When the deployment checks run
    result = check_deploy(env, tmp_path)
    # Then they name what HTTPS would fix (so the clean run above is the settings' doing)
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout, warning


def test_check_deploy__malformed_proxy_header__fails_at_start(tmp_path):
    # Given a proxy header setting that is not a header name
    env = production_environment(VETO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https")
    # When the settings load, Then they refuse it, naming the variable
    result = check_deploy(env, tmp_path)
    assert result.returncode != 0
    assert "VETO_SECURE_PROXY_SSL_HEADER" in result.stderr


@pytest.mark.django_db
def test_pages__csp_and_security_headers():
    # Given the default settings, When a browser opens a page
    response = Client().get("/accounts/login/")
    # Then it carries a strict CSP (no inline script or style, no eval) and the usual headers
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.asgi_server
@pytest.mark.django_db(transaction=True)
def test_live_server__https_behind_a_proxy__redirects_http_sends_hsts_and_secure_cookies(tmp_path):
    # Given the real server with HTTPS on, behind a proxy that sets X-Forwarded-Proto
    process, server = start_asgi_server(
        tmp_path / "server.log", VETO_HTTPS="1", VETO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"
    )
    try:
        # When a page is asked for over plain HTTP, then over HTTPS (as the proxy reports it)
        plain = httpx.get(f"{server.url}/accounts/login/", timeout=10)
        secure = httpx.get(
            f"{server.url}/accounts/login/", headers={"X-Forwarded-Proto": "https"}, timeout=10
        )
        probe = httpx.get(f"{server.url}/readyz", timeout=15)
    finally:
        stop_processes(process)
    # Then plain HTTP is redirected to HTTPS; HTTPS gets HSTS and Secure cookies
    assert plain.status_code == 301
    assert plain.headers["location"].startswith("https://")
    assert secure.status_code == 200
    assert secure.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
    assert "secure" in secure.headers["set-cookie"].lower()
    # and the readiness probe still answers over plain HTTP (probes do not speak TLS)
    assert probe.status_code in (200, 503) and "checks" in probe.json()
