"""The policies page: "Roll back to vN" only for a version that was active before (a draft's
first publish is "Publish vN", whatever its number, and is recorded as a publish), and the
four-eyes rule for a person whose own key wrote the version or proposed the draft."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from policies.models import PolicyDraft, RuleSetPublication, RuleSetVersion
from policies.services import policy_draft_create, rule_set_version_create, rule_set_version_publish
from tenancy.actor import Actor
from tenancy.models import ApiKey
from tenancy.services import api_key_create
from tests.factories import BY_TESTS, as_key

pytestmark = pytest.mark.django_db

RULES = "rules:\n  - {{name: r{n}, tool: t{n}, action: deny}}\n"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text_of(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def publish_url(team, number: int) -> str:
    return reverse("policies:version-publish", args=[team.slug, number])


def page(client: Client, team) -> str:
    return client.get(reverse("policies:page", args=[team.slug])).content.decode()


def button_of(html: str, number: int) -> str:
    """The text of version ``number``'s publish button in the history."""
    row = html.split(f'id="version-{number}"', 1)[1].split("</tr>", 1)[0]
    found = re.search(r"<button[^>]*>([^<]*)</button>", row)
    return found.group(1).strip() if found else ""


def personal_key(team, person) -> ApiKey:
    key, _ = api_key_create(team=team, name="personal", created_by=person)
    ApiKey.objects.filter(pk=key.pk).update(user=person)
    return key


@pytest.fixture
def history(team, alice, dana):
    """v1 and v2 published in turn, drafts v3 and v4 saved and never published, v5 published."""
    versions = [
        rule_set_version_create(team=team, source_text=RULES.format(n=n), author=Actor.person(alice))
        for n in range(1, 6)
    ]
    for index in (0, 1, 4):
        rule_set_version_publish(version=versions[index], actor=Actor.person(dana))
    return versions


def test_page__never_published_drafts_older_than_the_active_one__offered_as_publish_not_rollback(
    team, dana, history
):
    # Given the history: v5 active, v1 and v2 active before, v3 and v4 never published
    # When a team admin opens the page
    html = page(client_for(dana), team)
    # Then the drafts are offered for publishing, and only the versions active before for rollback
    assert [button_of(html, n) for n in (1, 2, 3, 4)] == [
        "Roll back to v1",
        "Roll back to v2",
        "Publish v3",
        "Publish v4",
    ]
    assert "Roll back to v3" not in html and "Roll back to v4" not in html


def test_publish__never_published_draft_v4__recorded_as_a_publish_replacing_v5(team, dana, history):
    # Given v5 active and the draft v4 never published
    # When dana publishes v4
    response = client_for(dana).post(publish_url(team, 4), follow=True)
    # Then the page, the history and the trail call it a publish, not a rollback
    assert "Published version 4; it is now active." in text_of(response)
    publication = RuleSetPublication.objects.filter(team=team).first()
    assert (publication.kind, publication.version.number, publication.previous_version.number) == (
        "publish",
        4,
        5,
    )
    publications = text_of(client_for(dana).get(reverse("policies:page", args=[team.slug]))).split(
        "Publications", 1
    )[1]
    assert re.search(r"Publish v4 v5 dana", publications)
    assert not re.search(r"Rollback v4", publications)
    trail = AuditEvent.objects.filter(team=team, kind=AuditEvent.Kind.RULE_SET_PUBLISHED).order_by(
        "-sequence"
    )
    assert '"publication":"publish"' in trail.first().record.replace(" ", "")
    # And now v5, active before, is offered as a rollback
    assert button_of(page(client_for(dana), team), 5) == "Roll back to v5"


def test_publish__version_active_before__recorded_as_a_rollback(team, dana, history):
    # Given v5 active, When dana goes back to v2 (active before)
    response = client_for(dana).post(publish_url(team, 2), follow=True)
    # Then it is a rollback, said so on the page and in the history
    assert "Rolled back to version 2 (from version 5)." in text_of(response)
    assert RuleSetPublication.objects.filter(team=team).first().kind == "rollback"


def test_publish__version_uploaded_with_the_persons_own_key__button_disabled_and_403(team, alice, dana):
    # Given a version uploaded with dana's personal key
    key = personal_key(team, dana)
    rule_set_version_create(team=team, source_text=RULES.format(n=1), author=as_key(key))
    # When dana opens the page, Then the publish button is disabled with the four-eyes reason
    html = page(client_for(dana), team)
    assert 'action="' + publish_url(team, 1) + '"' not in html
    assert "You wrote version 1, so someone else has to publish it" in html
    # And posting anyway is refused, and nothing is published
    response = client_for(dana).post(publish_url(team, 1))
    assert response.status_code == 403
    assert "someone else has to publish it" in text_of(response)
    assert not RuleSetVersion.objects.filter(team=team, is_active=True).exists()


def test_draft_approve__draft_proposed_with_the_persons_own_key__button_disabled_and_403(team, dana):
    # Given an active version and a draft proposed with dana's personal key
    rule_set_version_publish(
        version=rule_set_version_create(team=team, source_text=RULES.format(n=1)), actor=BY_TESTS
    )
    key = personal_key(team, dana)
    draft = policy_draft_create(
        team_id=team.id,
        name="cap",
        rules=[{"id": "cap", "name": "cap", "action": "block", "tools": ["transfer"]}],
        actor=as_key(key),
    )
    approve_url = reverse("policies:draft-approve", args=[team.slug, draft.id])
    # When dana opens the page, Then she is not offered to approve it, and sees why
    html = page(client_for(dana), team)
    section = html.split('id="drafts"', 1)[1].split('id="tool-policies"', 1)[0]
    assert approve_url not in section
    assert "proposed this draft, so someone else has to approve it" in section
    # And posting anyway is refused; the draft stays open
    response = client_for(dana).post(approve_url)
    assert response.status_code == 403
    assert "four-eyes" in text_of(response)
    draft.refresh_from_db()
    assert draft.status == PolicyDraft.Status.DRAFT
