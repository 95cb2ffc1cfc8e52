"""Error pages: DEBUG is opt-in, pages get plain error pages (never the URL list or a traceback),
and API clients get ``{"error": {...}}`` for every error, in every mode, DEBUG included."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from django.contrib.auth.views import LoginView
from django.test import Client

from conftest import BASE_DIR, start_asgi_server, stop_processes
from tenancy.authentication import ApiKeyAuthentication
from tests.factories import TeamFactory, api_key_for

pytestmark = pytest.mark.django_db

URL_LIST = "Using the URLconf"  # Django's technical 404 page lists every pattern after this
TRACEBACK = "Traceback"


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


@pytest.fixture
def client() -> Client:
    # What a browser or an SDK sees: the response, not the exception re-raised into the test.
    return Client(raise_request_exception=False)


def _boom(*args, **kwargs):
    raise RuntimeError("boom: an unexpected bug")


@pytest.mark.parametrize("path", ["/v1/no-such-endpoint", "/v1/tools/validat", "/api/nothing-here", "/v1"])
def test_unknown_api_url__any_mode__json_404_without_the_url_list(client, debug, path):
    # Given DEBUG off or on
    # When an API client asks for a path that does not exist
    response = client.get(path)
    # Then it gets a JSON 404 naming the path, not Django's page listing every URL pattern
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    assert path in response.json()["error"]["message"]
    assert URL_LIST not in response.content.decode()


def test_unknown_page_url__debug_off__plain_404_page_without_the_url_list(client, settings):
    # Given the default mode (DEBUG off)
    settings.DEBUG = False
    # When a browser asks for a page that does not exist
    response = client.get("/dashboard/no-such-page/")
    # Then it gets a plain HTML 404: no URL patterns, no settings
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    assert URL_LIST not in body
    assert "admin/" not in body and "v1/" not in body


def test_unexpected_error_in_an_api_view__any_mode__json_500_without_traceback(
    client, debug, monkeypatch, settings
):
    # Given an API key, and a bug that raises inside the API's request handling
    key = api_key_for(TeamFactory())
    monkeypatch.setattr(ApiKeyAuthentication, "authenticate", _boom)
    settings.DATABASE_URL = "postgres://veto:hunter2@db.internal:5432/veto"
    # When an API client calls an endpoint
    response = client.get("/v1/decisions", headers={"X-Veto-API-Key": key})
    # Then it gets JSON {"error": {"code": "internal_error"}}: no traceback, no settings
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "internal_error", "message": "internal server error"}}


def test_unexpected_error_in_a_page__debug_off__plain_500_page(client, monkeypatch, settings):
    # Given DEBUG off, and a bug in a page's view
    settings.DEBUG = False
    monkeypatch.setattr(LoginView, "get", _boom)
    settings.DATABASE_URL = "postgres://veto:hunter2@db.internal:5432/veto"
    # When a browser opens it
    response = client.get("/accounts/login/")
    # Then it gets Django's plain 500 page: no traceback, no request, no settings
    assert response.status_code == 500
    body = response.content.decode()
    assert TRACEBACK not in body and "boom" not in body and "hunter2" not in body


def test_unexpected_error_in_a_page__debug_on__traceback_hides_database_url(client, monkeypatch, settings):
    # Given DEBUG opted into, and a database URL with a password in the settings
    settings.DEBUG = True
    settings.DATABASE_URL = "postgres://veto:hunter2@db.internal:5432/veto"
    monkeypatch.setattr(LoginView, "get", _boom)
    # When a page fails
    response = client.get("/accounts/login/")
    # Then the debug page shows the traceback, but not the database URL
    body = response.content.decode()
    assert response.status_code == 500
    assert "boom: an unexpected bug" in body
    assert "hunter2" not in body
    assert "DATABASE_URL" in body  # listed, with its value masked


def test_refusal_rendered_as_yaml_on_an_api_path__json_error_keeping_allow_header(client):
    # Given the OpenAPI document's view (GET only), whose renderers are YAML and OpenAPI JSON
    # When it is called with a method it does not allow
    response = client.delete("/api/schema/")
    # Then the refusal is JSON too, and still says which methods are allowed
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response["Allow"]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [({}, False), ({"VETO_DEBUG": "1"}, True), ({"DEBUG": "true"}, True), ({"VETO_DEBUG": "0"}, False)],
)
def test_local_settings__debug__off_unless_opted_in(environment, expected, tmp_path):
    # Given the settings `make run` and manage.py use, with no SECRET_KEY in the environment
    env = {
        key: value for key, value in os.environ.items() if key not in ("DEBUG", "VETO_DEBUG", "SECRET_KEY")
    }
    env.update(environment, DJANGO_SETTINGS_MODULE="veto_cloud.settings.local", VETO_VAR_DIR=str(tmp_path))
    # When they are loaded
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; print(settings.DEBUG, len(settings.SECRET_KEY))",
        ],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then DEBUG is on only when asked for, and a generated secret key (kept in the var dir) is used
    assert result.returncode == 0, result.stderr
    debug_on, key_length = result.stdout.split()
    assert debug_on == str(expected)
    assert int(key_length) >= 50
    assert (tmp_path / "secret-key").stat().st_mode & 0o077 == 0


@pytest.mark.asgi_server
def test_live_server__debug_on_and_a_broken_database__api_errors_are_json(tmp_path):
    # Given the real ASGI server with DEBUG opted into, on a database that has no tables
    # (every query fails: an unexpected error on the gateway's and on Django's paths alike)
    process, server = start_asgi_server(
        tmp_path / "server.log",
        VETO_DEBUG="1",
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}",
        VETO_VAR_DIR=str(tmp_path),
    )
    key = {"X-Veto-API-Key": "vk_test_" + "x" * 40}
    try:
        # When API clients call the gateway, a Django API view, and an unknown path
        gateway = httpx.post(
            f"{server.url}/v1/tools/validate",
            json={"tool_name": "t", "arguments": {}},
            headers=key,
            timeout=10,
        )
        django_view = httpx.get(f"{server.url}/v1/decisions", headers=key, timeout=10)
        unknown = httpx.get(f"{server.url}/v1/nope", timeout=10)
        page = httpx.get(f"{server.url}/no-such-page/", timeout=10)
    finally:
        stop_processes(process)
    # Then each answers JSON {"error": {...}}: no traceback, no URL list
    for response in (gateway, django_view):
        assert response.status_code >= 500, response.text
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()["error"]) >= {"code", "message"}
        assert TRACEBACK not in response.text
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    # and pages, opted into DEBUG, still get Django's debug 404 (that is what DEBUG is for)
    assert page.status_code == 404 and URL_LIST in page.text


def test_disallowed_host_on_an_api_path__any_mode__json_400(client, debug):
    # Given DEBUG off or on
    # When an API request names a host this server does not serve
    response = client.get("/v1/decisions", headers={"Host": "evil.example"})
    # Then the refusal is JSON, not Django's page (or, with DEBUG, its settings dump)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "invalid_request"
    assert "ALLOWED_HOSTS" not in response.content.decode()
