"""The live path end to end: the real ASGI server, a websocket opened with a signed-in session,
decisions made through POST /v1/tools/validate, and what the socket receives.

Covers what the browser tests cannot pin precisely: a matching row arrives (and a non-matching
one does not), another team's events never arrive, a person removed from a team stops receiving
it, a reconnect with the page's cursor fills what was missed, and sockets without a session or
from another site's page are refused.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets
from django.conf import settings

from conftest import LiveServer, start_asgi_server, stop_processes
from tenancy.models import Membership
from tests.factories import TeamFactory, UserFactory, api_key_for, set_live_server_password

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

PASSWORD = "live-socket-password"
ROW = re.compile(r'<tr id="decision-([0-9a-f-]{36})"')


@pytest.fixture(scope="module")
def socket_server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[LiveServer]:
    # Its own server, so the tests of this module share one process and its channel layer.
    process, server = start_asgi_server(tmp_path_factory.mktemp("live-socket") / "server.log")
    yield server
    stop_processes(process)


def session_cookie(server: LiveServer, user) -> str:
    """Log ``user`` in on the live server as a browser does; the session cookie it sets."""
    set_live_server_password(user, PASSWORD)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        form = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        response = client.post(
            "/accounts/login/",
            data={"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{server.url}/accounts/login/"},
        )
        assert response.status_code == 302, response.text
        return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME]}"


def socket_url(server: LiveServer, query: str) -> str:
    return server.url.replace("http://", "ws://") + "/ws/live/?" + query


async def connect(server: LiveServer, cookie: str | None, query: str, *, origin: str | None = None):
    return await websockets.connect(
        socket_url(server, query),
        additional_headers={"Cookie": cookie} if cookie is not None else {},
        origin=origin or server.url,
        open_timeout=5,
    )


def validate(server: LiveServer, token: str, tool: str, **arguments: object) -> None:
    response = httpx.post(
        f"{server.url}/v1/tools/validate",
        headers={"X-Veto-API-Key": token},
        json={"tool_name": tool, "arguments": arguments},
        timeout=5,
    )
    assert response.status_code == 200, response.text


async def rows_within(socket, seconds: float) -> tuple[list[str], list[str]]:
    """Row ids and whole messages received within ``seconds``."""
    rows: list[str] = []
    messages: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(socket.recv(), timeout=left)
        except (TimeoutError, websockets.exceptions.ConnectionClosed):
            break
        messages.append(str(message))
        rows.extend(ROW.findall(str(message)))
    return rows, messages


def member(team, role: str = Membership.Role.MEMBER):
    user = UserFactory()
    Membership.objects.create(user=user, team=team, role=role)
    return user


def test_socket__explorer_filters__matching_row_arrives_and_other_does_not(socket_server):
    # Given alice's explorer socket on team payments, filtered to tool export_customers
    team = TeamFactory()
    alice = member(team)
    alice_cookie = session_cookie(socket_server, alice)
    token = api_key_for(team)

    async def scenario() -> tuple[list[str], list[str], float]:
        async with await connect(
            socket_server,
            alice_cookie,
            f"kinds=decisions&team={team.slug}&rows=1&tool=export_customers&after=0",
        ) as socket:
            await rows_within(socket, 0.5)  # whatever connecting sends
            # When one matching and one other decision are made
            started = time.monotonic()
            await asyncio.to_thread(validate, socket_server, token, "export_customers", rows=10)
            await asyncio.to_thread(validate, socket_server, token, "send_sms", to="+15550100")
            first = await asyncio.wait_for(socket.recv(), timeout=3)
            latency = time.monotonic() - started
            rest, messages = await rows_within(socket, 1.0)
            return ROW.findall(str(first)) + rest, [str(first), *messages], latency

    rows, messages, latency = asyncio.run(scenario())

    # Then exactly the matching one arrived, within a second, with its row's tool
    assert len(rows) == 1, messages
    assert "export_customers" in messages[0] and "send_sms" not in "".join(messages)
    assert latency < 1.0
    assert 'id="live-cursor"' in messages[0]


def test_socket__another_teams_events__never_arrive(socket_server):
    # Given bob watching his own team, and a decision in another team
    ours, theirs = TeamFactory(), TeamFactory()
    bob = member(ours)
    bob_cookie = session_cookie(socket_server, bob)
    token = api_key_for(theirs)

    async def scenario() -> list[str]:
        async with await connect(socket_server, bob_cookie, "kinds=decisions,approvals,policies") as socket:
            await rows_within(socket, 0.5)
            await asyncio.to_thread(validate, socket_server, token, "export_customers", rows=1)
            _, messages = await rows_within(socket, 1.5)
            return messages

    # Then nothing at all reaches bob's socket
    assert asyncio.run(scenario()) == []


def test_socket__member_removed__stops_receiving_the_team(socket_server):
    # Given carol's explorer socket on her team
    team = TeamFactory()
    carol = member(team)
    Membership.objects.create(  # still in another team: this is about the one she left
        user=carol, team=TeamFactory(), role=Membership.Role.MEMBER
    )
    carol_cookie = session_cookie(socket_server, carol)
    token = api_key_for(team)

    async def scenario() -> list[tuple[list[str], int | None]]:
        query = f"kinds=decisions&team={team.slug}&rows=1&after=0"
        # (two tabs of one session: the server reads her teams once for both, and closes both)
        async with (
            await connect(socket_server, carol_cookie, query) as socket,
            await connect(socket_server, carol_cookie, query) as other_tab,
        ):
            tabs = [socket, other_tab]
            await asyncio.gather(*(rows_within(tab, 0.5) for tab in tabs))
            await asyncio.to_thread(validate, socket_server, token, "before_removal")
            before = await asyncio.gather(*(rows_within(tab, 1.0) for tab in tabs))
            # When she is removed from the team (as Django's admin would: no event of its own)
            await asyncio.to_thread(Membership.objects.filter(user=carol, team=team).delete)
            # Then within the re-check interval the next batch closes her sockets instead of arriving
            await asyncio.sleep(5.5)
            await asyncio.to_thread(validate, socket_server, token, "after_removal")
            after = await asyncio.gather(*(rows_within(tab, 1.5) for tab in tabs))
            for _, messages in after:
                assert not any("after_removal" in m for m in messages)
            return [(b[0] + a[0], tab.close_code) for b, a, tab in zip(before, after, tabs, strict=True)]

    for rows, close_code in asyncio.run(scenario()):
        assert len(rows) == 1
        assert close_code == 4403  # forbidden (4401 would be: signed out)


def test_socket__reconnect_with_cursor__fills_what_was_missed(socket_server):
    # Given decisions made while dana's page was away, after the cursor it last held
    team = TeamFactory()
    dana = member(team)
    dana_cookie = session_cookie(socket_server, dana)
    token = api_key_for(team)
    validate(socket_server, token, "seen_before")  # sequence 1: on the page already
    for n in range(3):
        validate(socket_server, token, f"missed_{n}")

    async def scenario() -> tuple[list[str], str]:
        async with await connect(
            socket_server, dana_cookie, f"kinds=decisions&team={team.slug}&rows=1&after=1&resumed=1"
        ) as socket:
            rows, messages = await rows_within(socket, 1.0)
            return rows, "".join(messages)

    # When her socket reconnects with after=1, it receives exactly the three missed rows, newest first
    rows, received = asyncio.run(scenario())
    assert len(rows) == 3
    assert "seen_before" not in received
    assert received.index("missed_2") < received.index("missed_1") < received.index("missed_0")


def test_socket__without_session_or_from_another_site__refused(socket_server):
    team = TeamFactory()
    erin = member(team)
    erin_cookie = session_cookie(socket_server, erin)

    async def closed_by_server() -> int | None:
        async with await connect(socket_server, None, "kinds=approvals") as socket:
            await rows_within(socket, 0.5)
            return socket.close_code

    # Without a session: closed with 4401
    assert asyncio.run(closed_by_server()) == 4401
    # From another site's page (a foreign Origin): the handshake is refused
    with pytest.raises(websockets.exceptions.InvalidStatus):
        asyncio.run(connect(socket_server, erin_cookie, "kinds=approvals", origin="http://evil.example"))
    # Another team's slug in the query: closed with 4400
    other = TeamFactory()

    async def foreign_team() -> int | None:
        async with await connect(
            socket_server, erin_cookie, f"kinds=decisions&team={other.slug}&rows=1"
        ) as socket:
            await rows_within(socket, 0.5)
            return socket.close_code

    assert asyncio.run(foreign_team()) == 4400


def test_socket__signed_out_elsewhere__socket_ends(socket_server):
    # Given frank's explorer socket, on the session of a browser that then logs out
    team = TeamFactory()
    frank = member(team)
    cookie = session_cookie(socket_server, frank)
    token = api_key_for(team)

    def log_out() -> None:
        with httpx.Client(base_url=socket_server.url, timeout=5, headers={"Cookie": cookie}) as client:
            page = client.get("/dashboard/api-keys/")
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            response = client.post(
                "/accounts/logout/",
                data={"csrfmiddlewaretoken": csrf},
                headers={
                    "Referer": f"{socket_server.url}/dashboard/api-keys/",
                    "Cookie": f"{cookie}; csrftoken={client.cookies['csrftoken']}",
                },
            )
            assert response.status_code in (200, 302), response.text

    async def scenario() -> tuple[list[str], int | None]:
        async with await connect(
            socket_server, cookie, f"kinds=decisions&team={team.slug}&rows=1&after=0"
        ) as socket:
            await rows_within(socket, 0.5)
            # When the session ends, and after the re-check interval a decision is made
            await asyncio.to_thread(log_out)
            await asyncio.sleep(5.5)
            await asyncio.to_thread(validate, socket_server, token, "after_logout")
            rows, _ = await rows_within(socket, 1.5)
            return rows, socket.close_code

    # Then the row does not arrive: the socket is closed as unauthenticated
    rows, close_code = asyncio.run(scenario())
    assert rows == []
    assert close_code == 4401


def test_socket__removed_in_team_settings__socket_ends_at_once(socket_server):
    # Given gina's explorer socket, and her team's admin on the team settings page
    team = TeamFactory()
    gina = member(team)
    Membership.objects.create(user=gina, team=TeamFactory(), role=Membership.Role.MEMBER)
    admin = member(team, Membership.Role.ADMIN)
    gina_cookie = session_cookie(socket_server, gina)
    admin_cookie = session_cookie(socket_server, admin)
    settings_url = f"/dashboard/teams/{team.slug}/settings/"

    def remove_gina() -> None:
        with httpx.Client(base_url=socket_server.url, timeout=5, headers={"Cookie": admin_cookie}) as client:
            page = client.get(settings_url)
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            response = client.post(
                settings_url + "members/remove",
                data={"csrfmiddlewaretoken": csrf, "username": gina.username},
                headers={
                    "Referer": socket_server.url + settings_url,
                    "Cookie": f"{admin_cookie}; csrftoken={client.cookies['csrftoken']}",
                },
            )
            assert response.status_code == 302, response.text

    async def scenario() -> tuple[float, list[int | None]]:
        query = f"kinds=decisions&team={team.slug}&rows=1"
        async with (
            await connect(socket_server, gina_cookie, query) as socket,
            await connect(socket_server, gina_cookie, query) as other_tab,
        ):
            tabs = [socket, other_tab]
            await asyncio.gather(*(rows_within(tab, 0.5) for tab in tabs))
            # When the admin removes her (the service chains a team.changed entry naming her)
            started = time.monotonic()
            await asyncio.to_thread(remove_gina)
            await asyncio.gather(*(rows_within(tab, 3.0) for tab in tabs))
            return time.monotonic() - started, [tab.close_code for tab in tabs]

    # Then both her tabs are closed well before the periodic re-check would have come round
    elapsed, close_codes = asyncio.run(scenario())
    assert close_codes == [4403, 4403]
    assert elapsed < 3.0


def test_socket__decisions_through_two_web_processes__every_row_once(socket_server, tmp_path):
    # Given a second web process on the same database and Redis, and hana's explorer socket on
    # the first: each process's sink sends the decisions it committed, so the team's order
    # numbers reach her interleaved
    if not settings.REDIS_URL:
        pytest.skip("two web processes share live events through Redis: needs REDIS_URL (and PostgreSQL)")
    second_process, second = start_asgi_server(tmp_path / "second.log")
    try:
        team = TeamFactory()
        hana = member(team)
        cookie = session_cookie(socket_server, hana)
        token = api_key_for(team)

        async def scenario() -> list[str]:
            async with await connect(
                socket_server, cookie, f"kinds=decisions&team={team.slug}&rows=1&after=0"
            ) as socket:
                await rows_within(socket, 0.5)

                # When 40 decisions are made, alternating between the two processes, 8 at a time
                async def burst(start: int) -> None:
                    await asyncio.gather(
                        *(
                            asyncio.to_thread(validate, (socket_server, second)[n % 2], token, f"call_{n}")
                            for n in range(start, start + 8)
                        )
                    )

                for start in range(0, 40, 8):
                    await burst(start)
                rows, _ = await rows_within(socket, 3.0)
                return rows

        rows = asyncio.run(scenario())
    finally:
        stop_processes(second_process)

    # Then every one of them reached her page, each once
    assert len(rows) == 40
    assert len(set(rows)) == 40
