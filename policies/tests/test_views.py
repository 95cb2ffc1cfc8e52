"""The policies page (Django test client): who sees and does what, the live editor check,
saving, publishing and rolling back, diff and impact preview, and that bad input never 500s."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from policies.models import RuleSetPublication, RuleSetVersion
from policies.services import rule_set_version_create, rule_set_version_publish
from policies.tests.conftest import member_of
from tenancy.actor import Actor
from tenancy.models import Membership
from tests.factories import BY_TESTS, TeamFactory, UserFactory, record_decision

pytestmark = pytest.mark.django_db

V1 = """\
rules:
  - name: bucket_allowlist
    tool: run_data_export
    when: "!args.bucket.startsWith('internal-')"
    action: deny
fixtures:
  - suite: exports
    tests:
      - {id: public, tool: run_data_export, arguments: {bucket: s3://x}, expect: {decision: deny}}
"""
V2 = """\
rules:
  - name: bucket_allowlist
    tool: run_data_export
    when: "!args.bucket.startsWith('internal-')"
    action: require_approval
  - name: no_sms
    tool: send_sms
    action: deny
"""
BROKEN = """\
rules:
  - name: a
    action: nope
    when: 'args.x =='
"""


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def create(team, source: str, author=None) -> RuleSetVersion:
    return rule_set_version_create(
        team=team, source_text=source, author=Actor.person(author) if author is not None else None
    )


def page_url(team) -> str:
    return reverse("policies:page", args=[team.slug])


def publish_url(team, number: int) -> str:
    return reverse("policies:version-publish", args=[team.slug, number])


def validate(client, team, source: str):
    return client.post(reverse("policies:validate", args=[team.slug]), {"source": source})


def text_of(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


# --- who sees what ---------------------------------------------------------------------------


def test_page__anonymous__redirects_to_login(team):
    response = Client().get(page_url(team))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    ("method", "name", "args"),
    [
        ("get", "policies:page", []),
        ("post", "policies:validate", []),
        ("post", "policies:version-create", []),
        ("get", "policies:version", [1]),
        ("post", "policies:version-publish", [1]),
        ("get", "policies:impact", [1]),
    ],
)
def test_team_pages__non_member__404_and_nothing_changes(team, method, name, args):
    # Given a version of a team the user does not belong to
    create(team, V1)
    outsider = UserFactory(username="mallory")
    member_of(TeamFactory(), Membership.Role.ADMIN, username="mallory")  # an admin elsewhere
    # When they reach any of its pages
    response = getattr(client_for(outsider), method)(reverse(name, args=[team.slug, *args]), {"source": V2})
    # Then the team does not exist for them
    assert response.status_code == 404
    assert RuleSetVersion.objects.filter(team=team).count() == 1
    assert not RuleSetVersion.objects.filter(team=team, is_active=True).exists()


def test_diff__non_member__404(team):
    create(team, V1)
    create(team, V2)
    response = client_for(UserFactory()).get(reverse("policies:diff", args=[team.slug]), {"from": 1, "to": 2})
    assert response.status_code == 404


def test_teams_list__lists_only_the_users_teams_and_staff_sees_all(team, alice):
    other = TeamFactory(name="Elsewhere")
    assert "Payments" in text_of(client_for(alice).get(reverse("policies:teams")))
    assert "Elsewhere" not in text_of(client_for(alice).get(reverse("policies:teams")))
    staff = UserFactory(is_staff=True)
    listed = text_of(client_for(staff).get(reverse("policies:teams")))
    assert "Payments" in listed and other.name in listed
    assert client_for(staff).get(page_url(other)).status_code == 200


def test_dashboard_home__links_each_team_to_its_policies_page(team, alice):
    response = client_for(alice).get(reverse("dashboard:home"))
    assert f'href="{page_url(team)}"' in response.content.decode()


# --- the page --------------------------------------------------------------------------------


def test_page__member__shows_history_authors_active_version_and_rollbacks(team, alice, dana):
    # Given v1 published, v2 published, then a rollback to v1, and a draft v3
    v1 = create(team, V1, author=alice)
    rule_set_version_publish(version=v1, actor=Actor.person(dana))
    v2 = create(team, V2, author=alice)
    rule_set_version_publish(version=v2, actor=Actor.person(dana))
    rule_set_version_publish(version=v1, actor=Actor.person(dana))
    create(team, V2.replace("send_sms", "send_email"), author=dana)
    # When a member opens the page
    response = client_for(alice).get(page_url(team))
    # Then every version is listed with its author and status, v1 marked active
    assert response.status_code == 200
    html = response.content.decode()
    history = text_of(response).split("History", 1)[1].split("Edit a copy")[0]
    assert "v3" in history and "Draft" in history and "dana" in history
    assert re.search(r'<tr id="version-1" class="is-active">', html)
    assert 'id="version-2">' in html and 'id="version-3">' in html
    assert "Version 1</strong>, written by alice" in html
    # and the publications include the rollback, by whom, replacing which version
    publications = text_of(response).split("Publications", 1)[1]
    assert re.search(r"Rollback v1 v2 dana", publications)
    # and the editor starts from the active source; a member gets no publish buttons
    assert "bucket_allowlist" in html.split('id="source"', 1)[1]
    assert 'action="' + publish_url(team, 3) + '"' not in html


def test_page__editor_from_an_older_version__starts_with_its_source(team, alice):
    create(team, V1)
    create(team, V2)
    response = client_for(alice).get(page_url(team), {"from": 2})
    textarea = response.content.decode().split('id="source"', 1)[1].split("</textarea>")[0]
    assert "no_sms" in textarea


# --- the live check --------------------------------------------------------------------------


def test_validate__broken_rule__every_problem_listed_at_its_line(team, alice):
    response = validate(client_for(alice), team, BROKEN)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-line="3"' in html and 'data-line="4"' in html
    line3 = html.split('data-line="3"', 1)[1].split("</li>\n", 1)[0]
    assert "action: nope" in line3  # the offending line itself
    assert "rules[0].action" in line3 and "unknown action" in line3
    line4 = html.split('data-line="4"', 1)[1]
    assert "rules[0].when" in line4 and "syntax error" in line4
    assert "2 problems" in text_of(response)


def test_validate__valid_with_fixtures__reports_rules_and_fixture_results(team, alice):
    response = validate(client_for(alice), team, V1)
    assert "Valid: 1 rule, 1 fixture test: all pass" in text_of(response)
    failing = validate(client_for(alice), team, V1.replace("action: deny", "action: allow"))
    assert "1 failing" in text_of(failing)
    assert "expected decision &#x27;deny&#x27; but got &#x27;allow&#x27;" in failing.content.decode()


@pytest.mark.parametrize(
    "source",
    [
        "",
        "rules: [\n  - a: :",
        "\ttabs: are not yaml\n",
        "rules:\n  - name: x\n    tool: y\n   action: deny",
        "- just\n- a list",
        "just a string",
        "rules: 5",
        "rules:\n  - {name: x, action: deny, when: 'args.x.match(/(a)\\1/)'}",
        "bad: \x00 nul",
        "a: &x [*x]",
        "rules:\n" + "  - name: r\n    action: deny\n" * 3,
        "[" * 5000,
        "{{{}}}:",
    ],
)
def test_validate__bad_input__answers_with_problems_never_500(team, alice, source):
    response = validate(client_for(alice), team, source)
    assert response.status_code == 200
    assert "problem" in text_of(response)


def test_validate__empty_source__the_problem_is_listed_at_line_1(team, alice):
    # Given an empty editor, when it is checked, then the one problem still names a line.
    response = validate(client_for(alice), team, "")
    html = response.content.decode()
    assert 'data-line="1"' in html
    assert "must be a mapping" in text_of(response)


# --- saving ----------------------------------------------------------------------------------


def test_save__valid__stores_a_draft_authored_by_the_user_and_shows_it(team, alice):
    response = client_for(alice).post(
        reverse("policies:version-create", args=[team.slug]), {"source": V1}, follow=True
    )
    version = RuleSetVersion.objects.get(team=team)
    assert (version.number, version.status, version.is_active) == (1, "draft", False)
    assert version.author_user == alice and version.author_name == "alice"
    assert version.source_text == V1
    assert response.redirect_chain[-1][0] == reverse("policies:version", args=[team.slug, 1])
    assert "Saved version 1 as a draft." in text_of(response)


def test_save__invalid__400_keeps_the_text_lists_problems_and_stores_nothing(team, alice):
    response = client_for(alice).post(
        reverse("policies:version-create", args=[team.slug]), {"source": BROKEN}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Not saved: the rule set has 2 problems, listed below." in html
    assert "action: nope" in html.split('id="source"', 1)[1].split("</textarea>")[0]
    assert 'data-line="3"' in html
    assert not RuleSetVersion.objects.filter(team=team).exists()


@pytest.mark.parametrize(
    "source", ["rules: []\n# \x00", "{{{}}}:", "rules: &x [*x]", "x: 2020-02-30\nrules: ["]
)
def test_save__unparsable_input__400_not_500(team, alice, source):
    response = client_for(alice).post(
        reverse("policies:version-create", args=[team.slug]), {"source": source}
    )
    assert response.status_code == 400
    assert "Not saved" in text_of(response)
    assert not RuleSetVersion.objects.filter(team=team).exists()


# --- publishing ------------------------------------------------------------------------------


def test_publish__member__403_with_a_message_and_nothing_published(team, alice):
    create(team, V1, author=UserFactory())
    response = client_for(alice).post(publish_url(team, 1))
    assert response.status_code == 403
    assert "Only team admins can publish or roll back rule sets." in text_of(response)
    assert not RuleSetVersion.objects.filter(team=team, is_active=True).exists()


def test_publish__admin_who_wrote_it__refused_four_eyes(team, dana):
    create(team, V1, author=dana)
    response = client_for(dana).post(publish_url(team, 1))
    assert response.status_code == 403
    assert "You wrote version 1, so someone else has to publish it" in text_of(response)
    assert not RuleSetVersion.objects.filter(team=team, is_active=True).exists()
    # and the page shows the button disabled with the reason, not a form that would fail
    page = client_for(dana).get(reverse("policies:version", args=[team.slug, 1])).content.decode()
    assert 'action="' + publish_url(team, 1) + '"' not in page
    assert "someone else has to publish it" in page


def test_publish__staff_who_wrote_it__refused_four_eyes_too(team):
    staff = UserFactory(is_staff=True)
    create(team, V1, author=staff)
    assert client_for(staff).post(publish_url(team, 1)).status_code == 403


def test_publish__another_admin__publishes_and_the_version_is_active(team, alice, dana):
    # Given alice's draft
    create(team, V1, author=alice)
    # When dana (a team admin) publishes it from its page
    client = client_for(dana)
    page = client.get(reverse("policies:version", args=[team.slug, 1])).content.decode()
    assert 'action="' + publish_url(team, 1) + '"' in page
    response = client.post(publish_url(team, 1), follow=True)
    # Then it is the active version, published by dana
    version = RuleSetVersion.objects.get(team=team, number=1)
    assert version.is_active and version.status == "published"
    publication = RuleSetPublication.objects.get(team=team)
    assert (publication.kind, publication.actor_user, publication.actor_name) == ("publish", dana, "dana")
    assert "Published version 1; it is now active." in text_of(response)
    assert "Status Published (active)" in text_of(response)


def test_publish__staff_without_membership__may_publish(team, alice):
    create(team, V1, author=alice)
    staff = UserFactory(is_staff=True)
    assert client_for(staff).post(publish_url(team, 1)).status_code == 302
    assert RuleSetVersion.objects.get(team=team, number=1).is_active


def test_rollback__older_version__recorded_as_a_rollback(team, alice, dana):
    v1 = create(team, V1, author=alice)
    rule_set_version_publish(version=v1, actor=Actor.person(dana))
    rule_set_version_publish(version=create(team, V2, author=alice), actor=Actor.person(dana))
    page = client_for(dana).get(page_url(team)).content.decode()
    assert "Roll back to v1" in page
    response = client_for(dana).post(publish_url(team, 1), follow=True)
    assert "Rolled back to version 1 (from version 2)." in text_of(response)
    assert RuleSetVersion.objects.get(team=team, is_active=True).number == 1
    assert RuleSetPublication.objects.filter(team=team).first().kind == "rollback"


def test_publish__failing_fixtures__422_names_the_failure_and_nothing_changes(team, alice, dana):
    create(team, V1.replace("action: deny", "action: allow"), author=alice)
    response = client_for(dana).post(publish_url(team, 1))
    assert response.status_code == 422
    text = text_of(response)
    assert "1 of 1 fixture test(s) failed; version 1 was not published" in text
    assert "fail : expected decision" in text  # the fixture table names the failing test
    assert not RuleSetVersion.objects.filter(team=team, is_active=True).exists()


def test_publish__already_active__409_message(team, alice, dana):
    rule_set_version_publish(version=create(team, V1, author=alice), actor=BY_TESTS)
    response = client_for(dana).post(publish_url(team, 1))
    assert response.status_code == 409
    assert "version 1 is already active" in text_of(response)


def test_publish__unknown_version__404(team, dana):
    assert client_for(dana).post(publish_url(team, 7)).status_code == 404


@pytest.mark.parametrize(
    ("name", "args"),
    [("policies:version-publish", [1]), ("policies:version-create", []), ("policies:validate", [])],
)
def test_post__without_csrf_token__403(team, alice, dana, name, args):
    create(team, V1, author=alice)
    client = Client(enforce_csrf_checks=True)
    client.force_login(dana)
    response = client.post(reverse(name, args=[team.slug, *args]), {"source": V2})
    assert response.status_code == 403
    assert not RuleSetVersion.objects.filter(team=team, is_active=True).exists()
    assert RuleSetVersion.objects.filter(team=team).count() == 1


def test_get_only_views__refuse_post(team, dana):
    create(team, V1)
    assert client_for(dana).post(reverse("policies:version", args=[team.slug, 1])).status_code == 405


# --- diff, fixtures, impact ------------------------------------------------------------------


def test_diff__two_versions__rule_by_rule_with_changed_fields(team, alice):
    create(team, V1)
    create(team, V2)
    response = client_for(alice).get(
        reverse("policies:diff", args=[team.slug]), {"from": 1, "to": 2}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html  # an htmx fragment
    assert "+ added</strong> <code>no_sms</code>" in html
    changed = html.split("~ changed</strong> <code>bucket_allowlist</code>", 1)[1]
    assert re.search(r"<td>action</td><td><code class=\"before\">&quot;block&quot;</code></td>", changed)
    assert "&quot;require_approval&quot;" in changed
    # Without htmx (a plain link) the same diff comes inside a page
    page = client_for(alice).get(reverse("policies:diff", args=[team.slug]), {"from": 2, "to": 1})
    assert (
        "<html" in page.content.decode() and "− removed</strong> <code>no_sms</code>" in page.content.decode()
    )


@pytest.mark.parametrize("query", [{"from": 1, "to": 9}, {"from": "x", "to": 1}, {}])
def test_diff__unknown_or_missing_versions__404(team, alice, query):
    create(team, V1)
    assert client_for(alice).get(reverse("policies:diff", args=[team.slug]), query).status_code == 404


def test_version_page__shows_fixture_results_and_changes_against_active(team, alice):
    rule_set_version_publish(version=create(team, V1), actor=BY_TESTS)
    create(team, V2, author=alice)
    response = client_for(alice).get(reverse("policies:version", args=[team.slug, 2]))
    text = text_of(response)
    assert "No fixture tests" in text
    assert "From version 1 to version 2" in text and "added no_sms" in text
    v1 = text_of(client_for(alice).get(reverse("policies:version", args=[team.slug, 1])))
    assert "exports public deny deny (bucket_allowlist) pass" in v1


def test_impact__replays_recent_decisions_and_shows_what_would_change(team, alice):
    rule_set_version_publish(version=create(team, V1), actor=BY_TESTS)
    create(team, V2, author=alice)
    for bucket in ("s3://a", "s3://b"):
        record_decision(
            team,
            tool_name="run_data_export",
            arguments={"bucket": bucket},
            decision="deny",
            rule_id="bucket_allowlist",
        )
    response = client_for(alice).get(reverse("policies:impact", args=[team.slug, 2]), HTTP_HX_REQUEST="true")
    text = text_of(response)
    assert "Replayed the team's 2 most recent server decisions against version 2: 2 would be decided" in text
    assert "deny → require_approval : 2" in text
    assert "s3://a" in text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d run_data_export", text)
