"""The decisions explorer (dashboard:decisions) and its browser export (dashboard:decisions-export)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from veto.audit.chain import compute_chain_hash

from audit.selectors import DecisionFilters, explorer_newer_before, explorer_page
from tenancy.models import Membership
from tests.factories import TeamFactory, UserFactory, record_decision

pytestmark = pytest.mark.django_db

ROW = re.compile(r'<tr id="decision-([0-9a-f-]{36})" data-sequence="(\d+)"')


def member_client(team, *, role=Membership.Role.MEMBER) -> Client:
    user = UserFactory()
    Membership.objects.create(user=user, team=team, role=role)
    client = Client()
    client.force_login(user)
    return client


def page_url(team) -> str:
    return reverse("dashboard:decisions", args=[team.slug])


def export_url(team) -> str:
    return reverse("dashboard:decisions-export", args=[team.slug])


def many(team, count: int, **fields: object) -> None:
    for _ in range(count):
        record_decision(team, **fields)


def shown(response) -> list[int]:
    return [int(sequence) for _, sequence in ROW.findall(response.content.decode())]


def socket_query(html: str) -> dict[str, list[str]]:
    match = re.search(r'ws-connect="/ws/live/\?([^"]+)"', html)
    assert match, "no live socket on the page"
    return parse_qs(match.group(1).replace("&amp;", "&"))


def test_explorer__member__newest_first_with_counts_and_a_live_socket():
    # Given a team with three decisions, one of them denied by a rule in production
    team = TeamFactory(name="Payments")
    record_decision(team, tool_name="send_email")
    record_decision(
        team,
        tool_name="run_data_export",
        decision="deny",
        rule_id="no_exports",
        reason="Exports are off",
        context={
            "agent_id": "billing-bot",
            "session_id": "s-1",
            "custom": {"model": "gpt-5", "environment": "prod"},
        },
    )
    record_decision(team, tool_name="send_sms", decision="require_approval")

    # When a member opens the explorer
    response = member_client(team).get(page_url(team))

    # Then the rows are newest first, each with what it was and its context, and the counts add up
    assert response.status_code == 200
    html = response.content.decode()
    assert shown(response) == [3, 2, 1]
    assert "<code>no_exports</code>" in html and "gpt-5 · prod" in html
    assert "<code>billing-bot</code> · <code>s-1</code>" in html
    assert 'data-count="total">3</strong>' in html and 'data-count="deny">1</strong>' in html
    # and the page's socket asks for the team's rows from the head the page was drawn at
    query = socket_query(html)
    assert query["rows"] == ["1"] and query["team"] == [team.slug] and query["after"] == ["3"]
    assert "decisions" in query["kinds"][0]


def test_explorer__filters_combined__only_matching_rows_and_kept_in_links_and_socket():
    # Given decisions that differ in tool, outcome, model, environment, agent and session
    team = TeamFactory()
    wanted = {"agent_id": "a1", "session_id": "s1", "custom": {"model": "m1", "environment": "prod"}}
    record_decision(team, tool_name="export", decision="deny", rule_id="r1", context=wanted)
    record_decision(team, tool_name="export", decision="allow", rule_id="r1", context=wanted)
    record_decision(
        team, tool_name="export", decision="deny", rule_id="r1", context={**wanted, "agent_id": "a2"}
    )
    record_decision(team, tool_name="other", decision="deny", rule_id="r1", context=wanted)
    match = record_decision(team, tool_name="export", decision="deny", rule_id="r1", context=wanted)
    params = {
        "tool": "export",
        "decision": "deny",
        "rule": "r1",
        "model": "m1",
        "environment": "prod",
        "agent": "a1",
        "session": "s1",
        "source": "server",
    }

    # When a member asks for all of them at once
    response = member_client(team).get(page_url(team), params)

    # Then only the two decisions that match every filter are listed and counted
    assert response.status_code == 200
    assert shown(response) == [match.sequence, 1]
    html = response.content.decode()
    assert 'data-count="total">2</strong>' in html
    # and the form, the export links and the socket carry the same filters
    assert 'name="agent" value="a1"' in html and '<option value="deny" selected>' in html
    exports = re.findall(r'href="(/dashboard/teams/[^"]+/decisions/export/\?[^"]+)"', html)
    assert len(exports) == 2
    for link in exports:
        assert {
            k: v[0] for k, v in parse_qs(urlsplit(link.replace("&amp;", "&")).query).items() if k != "format"
        } == params
    query = socket_query(html)
    assert {name: query[name] for name in params} == {name: [value] for name, value in params.items()}


def test_explorer__time_range__inclusive_bounds_from_the_url():
    # Given decisions a minute apart
    team = TeamFactory()
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=1)
    for n in range(4):
        record_decision(team, created_at=start + timedelta(minutes=n))

    # When the range names the second and third minute exactly
    response = member_client(team).get(
        page_url(team),
        {
            "from": (start + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"),
            "to": (start + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M"),
        },
    )

    # Then both ends are in, nothing outside, and the inputs show the range
    assert response.status_code == 200
    assert shown(response) == [3, 2]
    assert (
        f'name="from" value="{(start + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")}"'
        in response.content.decode()
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"decision": "maybe"}, "decision: &#x27;maybe&#x27; is not one of allow, deny, require_approval"),
        ({"from": "yesterday", "tool": "send_email"}, "from: &#x27;yesterday&#x27; is not a date and time"),
        ({"from": "2026-12-02T10:00", "to": "2026-12-01T10:00"}, "from: is after to"),
        ({"tool": "x" * 201}, "tool: longer than 200 characters"),
        ({"before": "abc"}, "before: &#x27;abc&#x27; is not a positive whole number"),
    ],
)
def test_explorer__filter_it_cannot_apply__400_with_the_reason_and_the_input_kept(params, message):
    # Given a team with a decision
    team = TeamFactory()
    record_decision(team, tool_name="send_email")

    # When the query holds a value the explorer cannot use
    response = member_client(team).get(page_url(team), params)

    # Then it is a 400 whose page says why beside the form, keeps what was typed, lists nothing
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="filter-error"' in html and message in html and 'aria-describedby="filter-error"' in html
    if "tool" in params:
        assert f'name="tool" value="{params["tool"]}"' in html
    assert shown(response) == []


def test_explorer__form_with_empty_fields__redirects_to_the_filters_in_force():
    # Given a member who submits the form with only the tool filled in
    team = TeamFactory()
    client = member_client(team)
    form = {"tool": " send_email ", "decision": "", "rule": "", "model": "", "from": "", "to": ""}

    # When the page is asked for it
    response = client.get(page_url(team), form)

    # Then the URL she lands on names only that filter, and it shows the page
    assert response.status_code == 302
    assert response["Location"] == page_url(team) + "?tool=send_email"
    assert client.get(response["Location"]).status_code == 200


def test_explorer__older_and_newer_pages__keyset_by_sequence():
    # Given 120 decisions of one tool and 5 of another
    team = TeamFactory()
    many(team, 120, tool_name="send_email")
    many(team, 5, tool_name="send_sms")
    client = member_client(team)

    # When a member pages through the send_email ones
    first = client.get(page_url(team), {"tool": "send_email"})
    older = re.search(r'rel="next" href="([^"]+)"', first.content.decode()).group(1).replace("&amp;", "&")
    second = client.get(older)
    oldest_link = (
        re.search(r'rel="next" href="([^"]+)"', second.content.decode()).group(1).replace("&amp;", "&")
    )
    third = client.get(oldest_link)
    newer = re.search(r'rel="prev" href="([^"]+)"', third.content.decode()).group(1).replace("&amp;", "&")

    # Then each page is the next 50, newest first, without gaps or repeats, the last has no Older
    assert shown(first) == list(range(120, 70, -1))
    assert shown(second) == list(range(70, 20, -1))
    assert shown(third) == list(range(20, 0, -1))
    assert 'rel="next"' not in third.content.decode()
    # and Newer from the last page goes back to the page before it
    assert shown(client.get(newer)) == shown(second)
    # and an older page has no live rows (its socket still refreshes the counts)
    query = socket_query(second.content.decode())
    assert "rows" not in query and "tool" not in query


def test_explorer_newer_before__from_any_page__the_page_just_newer():
    # Given 10 matching decisions and pages of 3
    team = TeamFactory()
    many(team, 10)
    filters = DecisionFilters()
    pages = [explorer_page(team_id=team.id, filters=filters, size=3)]
    while pages[-1].older_before is not None:
        pages.append(explorer_page(team_id=team.id, filters=filters, before=pages[-1].older_before, size=3))
    assert [[r.sequence for r in p.rows] for p in pages] == [[10, 9, 8], [7, 6, 5], [4, 3, 2], [1]]

    # When each page asks for the one just newer than it
    newer = [explorer_newer_before(team_id=team.id, filters=filters, before=b, size=3) for b in (8, 5, 2)]

    # Then it is the page before it in that walk (the second page's newer page is the first: None)
    assert newer == [None, 8, 5]


def test_explorer__counts_fragment__alone_for_its_live_refresh():
    # Given a member's page of denied decisions
    team = TeamFactory()
    record_decision(team, decision="deny")
    client = member_client(team)
    record_decision(team, decision="deny")
    record_decision(team, decision="allow")

    # When the counts element refreshes itself (htmx: HX-Request, HX-Target explorer-counts)
    response = client.get(
        page_url(team), {"decision": "deny"}, headers={"HX-Request": "true", "HX-Target": "explorer-counts"}
    )

    # Then only that element comes back, with the new count and its own refresh attributes
    html = response.content.decode().strip()
    assert response.status_code == 200
    assert "<html" not in html and html.count('id="explorer-counts"') == 1
    assert 'data-count="total">2</strong>' in html
    assert 'data-live-refresh="decisions"' in html and 'hx-get="/dashboard/teams/' in html
    assert "decision=deny" in html


def test_explorer__outsider_404_and_anonymous_to_login():
    # Given a team and someone of another team
    team = TeamFactory()
    outsider = member_client(TeamFactory())

    # When each asks for the explorer and the export
    # Then the outsider learns nothing and the anonymous visitor is asked to log in
    for url in (page_url(team), export_url(team)):
        assert outsider.get(url).status_code == 404
        anonymous = Client().get(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")


def test_explorer__post__405():
    team = TeamFactory()
    assert member_client(team).post(page_url(team)).status_code == 405
    assert member_client(team).post(export_url(team)).status_code == 405


# The export reads on worker threads (audit/export.py): they see only committed rows.
committed = pytest.mark.django_db(transaction=True)


def _body(response) -> str:
    """The streamed file (an async stream, as under ASGI, read here through its sync bridge)."""
    with pytest.warns(Warning, match="asynchronous iterators"):  # the test client is not ASGI
        return b"".join(response).decode()


@committed
def test_export__csv_of_the_filtered_set__an_attachment_never_stored():
    # Given denied and allowed decisions
    team = TeamFactory(slug="payments")
    record_decision(team, decision="deny", tool_name="export", context={"custom": {"environment": "prod"}})
    record_decision(team, decision="allow", tool_name="export", context={"custom": {"environment": "prod"}})
    record_decision(team, decision="deny", tool_name="export", context={"custom": {"environment": "dev"}})

    # When a member exports the page's filters as CSV
    response = member_client(team).get(
        export_url(team), {"format": "csv", "decision": "deny", "environment": "prod"}
    )

    # Then the file holds that one chain entry, verifiable on its own, and is sent as a download
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert re.fullmatch(
        r'attachment; filename="decisions-payments-\d{8}T\d{6}Z\.csv"', response["Content-Disposition"]
    )
    assert response["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert [row["sequence"] for row in rows] == ["1"]
    assert compute_chain_hash(rows[0]["prev_hash"], json.loads(rows[0]["record"])) == rows[0]["hash"]


@committed
def test_export__json_by_default__the_apis_document():
    # Given two tools' decisions
    team = TeamFactory()
    record_decision(team, tool_name="send_email")
    record_decision(team, tool_name="send_sms")

    # When a member exports one tool without naming a format
    response = member_client(team).get(export_url(team), {"tool": "send_sms"})

    # Then it is the API's JSON export of that tool's entries
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].endswith('.json"')
    document = json.loads(_body(response))
    assert [entry["record"]["tool"] for entry in document["data"]] == ["send_sms"]
    assert set(document) == {"data", "checkpoints", "publicKey"}


@pytest.mark.parametrize(
    ("params", "message"), [({"format": "xml"}, "format: 'xml'"), ({"decision": "maybe"}, "decision:")]
)
def test_export__bad_format_or_filter__400_saying_why(params, message):
    team = TeamFactory()
    response = member_client(team).get(export_url(team), params)
    assert response.status_code == 400 and message in response.content.decode()
    assert response["Cache-Control"] == "no-store"


def test_explorer__queries__as_many_for_sixty_rows_as_for_one():
    # Given a member's explorer over one decision, and then over sixty (more than a page)
    team = TeamFactory()
    client = member_client(team)
    record_decision(team, context={"agent_id": "a", "custom": {"model": "m"}})
    client.get(page_url(team))  # the session and the like, read once
    with CaptureQueriesContext(connection) as one:
        assert client.get(page_url(team)).status_code == 200
    many(team, 59, context={"agent_id": "a", "custom": {"model": "m"}})

    # When the page is drawn again
    with CaptureQueriesContext(connection) as sixty:
        response = client.get(page_url(team))

    # Then it shows a page of them with the same queries: none per row
    assert len(shown(response)) == 50
    assert len(sixty) == len(one), [q["sql"] for q in sixty.captured_queries]


def test_explorer__each_row__links_to_its_decision_page():
    # Given a team's decision
    team = TeamFactory()
    decision = record_decision(team, tool_name="send_email")

    # When a member opens the explorer
    html = member_client(team).get(page_url(team)).content.decode()

    # Then its time is a link to that decision's page (dashboard:decision), named for a screen reader
    link = reverse("dashboard:decision", args=[team.slug, decision.id])
    assert re.search(rf'<a href="{link}" aria-label="Decision at [^"]+: send_email, Allow">', html)


def test_explorer__nothing_matches__says_so_and_keeps_the_list_for_live_rows():
    # Given a team whose only decision is of another tool
    team = TeamFactory()
    record_decision(team, tool_name="send_email")

    # When a member filters by a tool nobody called
    html = member_client(team).get(page_url(team), {"tool": "send_sms"}).content.decode()

    # Then the page says nothing matches yet, and the (empty) list is there for the live rows
    assert "No decisions match these filters yet." in html
    assert re.search(r'<tbody id="decision-rows" data-live-max-rows="500">\s*</tbody>', html)
    assert 'data-count="total">0</strong>' in html and 'rel="next"' not in html
