"""Failed API-key lookups are throttled per address, and a doubled key header is refused, on the
gateway and the Django API alike (in-process ASGI app: Redis-backed counts when REDIS_URL is set)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import httpx
import pytest
from django.core.asgi import get_asgi_application

from runtime.gateway import Gateway
from runtime.routes import runtime_routes
from tenancy import throttle
from tests.factories import TeamFactory, api_key_for

pytestmark = pytest.mark.django_db(transaction=True)

ATTACKER = "203.0.113.7"
NEIGHBOUR = "198.51.100.9"
VALIDATE = "/v1/tools/validate"
BODY = {"tool_name": "send_sms", "arguments": {}}


@pytest.fixture(autouse=True)
def _fresh_counts(settings):
    settings.API_KEY_FAILURES_PER_ADDRESS = 3
    settings.API_KEY_FAILURE_WINDOW_SECONDS = 60.0
    settings.API_KEY_LOCKOUT_SECONDS = 60.0
    throttle.forget_failed_lookups()
    yield
    throttle.forget_failed_lookups()


@pytest.fixture(scope="module")
def app():
    return Gateway(get_asgi_application(), runtime_routes)


def random_key() -> str:
    return "vk_" + secrets.token_urlsafe(32)


async def _send(
    app, address: str, requests: list[tuple[str, str, list[tuple[str, str]]]]
) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        responses = []
        for method, path, headers in requests:
            if method == "POST":
                responses.append(await client.post(path, json=BODY, headers=headers))
            else:
                responses.append(await client.get(path, headers=headers))
        return responses


def send(app, address: str, *requests: tuple[str, str, list[tuple[str, str]]]) -> list[httpx.Response]:
    return asyncio.run(_send(app, address, list(requests)))


def with_key(key: str) -> list[tuple[str, str]]:
    return [("X-Veto-API-Key", key)]


def test_gateway__too_many_unknown_keys_from_one_address__429_with_retry_after_logged_once(app, caplog):
    # Given an address that tries random keys on validate
    caplog.set_level(logging.WARNING, logger="tenancy.throttle")
    guesses = [("POST", VALIDATE, with_key(random_key())) for _ in range(6)]
    # When it sends six (the limit is three failures a window)
    responses = send(app, ATTACKER, *guesses)
    # Then the first three are 401, the rest 429 too_many_failed_keys with Retry-After
    assert [r.status_code for r in responses] == [401, 401, 401, 429, 429, 429]
    locked = responses[3]
    assert locked.json()["error"]["code"] == "too_many_failed_keys"
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    assert locked.json()["error"]["details"]["retry_after_seconds"] == int(locked.headers["Retry-After"])
    # And the lockout was logged once, by address
    lockouts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("auth.lockout")]
    assert len(lockouts) == 1
    assert f"address={ATTACKER}" in lockouts[0]


def test_gateway__address_locked_out__its_valid_key_refused_while_another_address_is_served(app):
    # Given a valid key, and an address that has used up its failed lookups
    key = api_key_for(TeamFactory())
    send(app, ATTACKER, *[("POST", VALIDATE, with_key(random_key())) for _ in range(4)])
    # When the locked address and another one present the valid key
    from_attacker = send(app, ATTACKER, ("POST", VALIDATE, with_key(key)))[0]
    from_neighbour = send(app, NEIGHBOUR, ("POST", VALIDATE, with_key(key)))[0]
    # Then the locked address is refused (a hit must not show), the other is served
    assert from_attacker.status_code == 429
    assert from_neighbour.status_code == 200


def test_gateway__lockout_over__the_address_is_served_again(app, settings):
    # Given an address locked out for one second
    settings.API_KEY_LOCKOUT_SECONDS = 1.0
    key = api_key_for(TeamFactory())
    send(app, ATTACKER, *[("POST", VALIDATE, with_key(random_key())) for _ in range(4)])
    assert send(app, ATTACKER, ("POST", VALIDATE, with_key(key)))[0].status_code == 429
    # When the second has passed
    time.sleep(1.1)
    # Then its valid key works again
    assert send(app, ATTACKER, ("POST", VALIDATE, with_key(key)))[0].status_code == 200


def test_django_api__too_many_unknown_keys__429_with_retry_after(app):
    # Given an address that tries random keys on the Django API (decisions list)
    guesses = [("GET", "/v1/decisions", with_key(random_key())) for _ in range(5)]
    # When it sends five
    responses = send(app, ATTACKER, *guesses)
    # Then it is locked out after three, with the same error as the gateway's
    assert [r.status_code for r in responses] == [401, 401, 401, 429, 429]
    assert responses[3].json()["error"]["code"] == "too_many_failed_keys"
    assert int(responses[3].headers["Retry-After"]) >= 1


def test_failed_lookups__counted_across_both_paths(app):
    # Given two failures on the gateway and one on the Django API from one address
    key = api_key_for(TeamFactory())
    send(
        app,
        ATTACKER,
        ("POST", VALIDATE, with_key(random_key())),
        ("GET", "/v1/decisions", with_key(random_key())),
        ("POST", "/v1/decisions", with_key(random_key())),
    )
    # When it fails once more, on either path
    locked = send(app, ATTACKER, ("GET", "/v1/decisions", with_key(random_key())))[0]
    # Then that is one too many, and the address's valid key is refused on both paths
    assert locked.status_code == 429
    after = send(app, ATTACKER, ("POST", VALIDATE, with_key(key)), ("GET", "/v1/decisions", with_key(key)))
    assert [r.status_code for r in after] == [429, 429]


def test_valid_keys__never_counted_as_failures(app):
    # Given an address one failure short of the limit
    key = api_key_for(TeamFactory())
    send(app, ATTACKER, *[("POST", VALIDATE, with_key(random_key())) for _ in range(2)])
    # When it makes many calls with its valid key, then fails once more
    calls = send(app, ATTACKER, *[("POST", VALIDATE, with_key(key)) for _ in range(10)])
    last = send(app, ATTACKER, ("POST", VALIDATE, with_key(random_key())))[0]
    # Then the valid calls were served and the third failure is still only a 401
    assert {r.status_code for r in calls} == {200}
    assert last.status_code == 401


@pytest.mark.parametrize(
    ("method", "path"), [("POST", VALIDATE), ("POST", "/v1/validate"), ("GET", "/v1/decisions")]
)
def test_two_api_key_headers__400_ambiguous_api_key_on_either_path(app, method, path):
    # Given a valid key, sent twice, and a valid key next to another value
    key = api_key_for(TeamFactory())
    same_twice = [("X-Veto-API-Key", key), ("X-Veto-API-Key", key)]
    other_last = [("X-Veto-API-Key", random_key()), ("X-Veto-API-Key", key)]
    # When each request is made
    responses = send(app, NEIGHBOUR, (method, path, same_twice), (method, path, other_last))
    # Then both are refused as ambiguous, saying which header
    for response in responses:
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "ambiguous_api_key"
        assert "X-Veto-API-Key" in response.json()["error"]["message"]


def test_revoked_key__used_again_and_again__401_never_a_lockout(app):
    # Given a revoked key (an agent left running with it, behind one NAT with others)
    from tenancy.models import ApiKey
    from tenancy.services import api_key_revoke

    team = TeamFactory()
    revoked = api_key_for(team, name="old")
    api_key_revoke(api_key=ApiKey.objects.get(team=team, name="old"))
    valid = api_key_for(team, name="new")
    # When it is presented far more often than the failure limit, on both paths
    tries = send(
        app,
        NEIGHBOUR,
        *[("POST", VALIDATE, with_key(revoked)), ("GET", "/v1/decisions", with_key(revoked))] * 4,
    )
    # Then each try is a 401, and a valid key from the same address is still served
    assert {r.status_code for r in tries} == {401}
    assert send(app, NEIGHBOUR, ("POST", VALIDATE, with_key(valid)))[0].status_code == 200
