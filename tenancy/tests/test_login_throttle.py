"""Login throttling (django-axes): per username and address, per address, per account; the page
says so; an admin unlocks; the ASGI path answers like the WSGI one."""

from __future__ import annotations

import asyncio
import logging
import re

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.core.management import call_command
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
LOGIN = "/accounts/login/"
LOCKED_TEXT = "Too many failed log-in attempts"


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.AXES_FAILURE_LIMIT = 5
    settings.LOGIN_FAILURES_PER_ADDRESS = 8
    settings.LOGIN_FAILURES_PER_ACCOUNT = 12


def log_in(username: str, password: str, *, address: str = "203.0.113.10", path: str = LOGIN):
    client = Client(REMOTE_ADDR=address)
    response = client.post(path, {"username": username, "password": password})
    return response, client


def is_logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_login__five_wrong_passwords__locked_even_for_the_right_one_with_a_clear_message(caplog):
    # Given a user, and someone guessing their password from one address
    caplog.set_level(logging.WARNING, logger="tenancy.login_throttle")
    alice = UserFactory(username="alice")
    answers = [log_in("alice", f"guess-{n}")[0] for n in range(5)]
    # When the right password is tried next, from that address
    response, client = log_in("alice", PASSWORD)
    # Then the guesses were refused, the fifth with the lockout, and so is the right password
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert response.status_code == 429
    assert not is_logged_in(client)
    assert LOCKED_TEXT in response.content.decode()
    assert int(response["Retry-After"]) == 15 * 60
    # And the lockout was logged once, naming the account and the address
    lockouts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("auth.lockout")]
    assert len(lockouts) == 1
    assert "username=alice" in lockouts[0] and "address=203.0.113.10" in lockouts[0]
    assert alice.is_active


def test_login__one_account_locked_from_one_address__it_logs_in_from_another():
    # Given alice locked out from one address
    UserFactory(username="alice")
    for n in range(5):
        log_in("alice", f"guess-{n}")
    # When she logs in from another address
    response, client = log_in("alice", PASSWORD, address="198.51.100.30")
    # Then she is in
    assert response.status_code == 302
    assert is_logged_in(client)


def test_login__one_address_sprays_many_accounts__that_address_is_locked_for_everyone():
    # Given one address trying two passwords on each of four accounts (8 failures)
    UserFactory(username="bob")
    for n in range(8):
        log_in(f"someone{n // 2}", f"guess-{n}", address="203.0.113.66")
    # When bob logs in, correctly, from that address, and from another one
    there, there_client = log_in("bob", PASSWORD, address="203.0.113.66")
    elsewhere, elsewhere_client = log_in("bob", PASSWORD, address="198.51.100.31")
    # Then that address is refused, the other served
    assert there.status_code == 429
    assert not is_logged_in(there_client)
    assert is_logged_in(elsewhere_client)


def test_login__an_office_with_a_few_typos__not_locked_below_the_per_address_limit():
    # Given six failures from one address over three accounts (two each: typos in an office)
    UserFactory(username="erin")
    for n in range(6):
        log_in(f"colleague{n // 2}", f"typo-{n}", address="203.0.113.77")
    # When erin logs in from that address
    response, client = log_in("erin", PASSWORD, address="203.0.113.77")
    # Then she is in: the address has its own, higher limit (8), not the per-account one (5)
    assert response.status_code == 302
    assert is_logged_in(client)


def test_login__one_account_guessed_from_many_addresses__the_account_is_locked():
    # Given carol's password guessed three times from each of four addresses (12 failures)
    UserFactory(username="carol")
    for n in range(12):
        log_in("carol", f"guess-{n}", address=f"192.0.2.{n // 3 + 1}")
    # When she logs in, correctly, from an address never seen
    response, client = log_in("carol", PASSWORD, address="198.51.100.99")
    # Then the account is locked
    assert response.status_code == 429
    assert not is_logged_in(client)


def test_admin_login__throttled_like_the_dashboard_login():
    # Given a staff user whose password is guessed on the admin site
    UserFactory(username="root", is_staff=True, is_superuser=True)
    for n in range(5):
        log_in("root", f"guess-{n}", path="/admin/login/")
    # When the right password is given there
    response, client = log_in("root", PASSWORD, path="/admin/login/")
    # Then it is refused too
    assert response.status_code == 429
    assert not is_logged_in(client)


def test_axes_reset_username__an_admin_unlocks_the_account():
    # Given alice locked out
    UserFactory(username="alice")
    for n in range(5):
        log_in("alice", f"guess-{n}")
    assert log_in("alice", PASSWORD)[0].status_code == 429
    # When an admin unlocks her
    call_command("axes_reset_username", "alice")
    # Then she logs in
    response, client = log_in("alice", PASSWORD)
    assert response.status_code == 302
    assert is_logged_in(client)


@pytest.mark.django_db(transaction=True)
def test_login_over_asgi__locked_out__429_page_with_the_message():
    # Given the login page served by Django's ASGI handler (as uvicorn serves it)
    UserFactory(username="dana")
    app = get_asgi_application()

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.12", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            page = await client.get(LOGIN)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert token is not None
            answers = []
            for password in [f"guess-{n}" for n in range(5)] + [PASSWORD]:
                form = {"username": "dana", "password": password, "csrfmiddlewaretoken": token.group(1)}
                answers.append(await client.post(LOGIN, data=form))
            return answers

    # When her password is guessed five times, then given right
    answers = asyncio.run(scenario())
    # Then the fifth guess and the right password get the lockout page
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
    assert LOCKED_TEXT in answers[-1].text
