"""The policies page's YAML editor with sources the loader refuses (issue 10, findings 3, 4
and 11): the live check and save list every problem at a line, never a 500."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings

from policies.models import RuleSetVersion
from policies.tests.test_views import client_for, text_of, validate
from tests.yaml_text import ISSUE_10_INPUTS, yamlish_text

pytestmark = pytest.mark.django_db

LINE = re.compile(r'data-line="(\d+)"')


def save(client, team, source: str):
    return client.post(reverse("policies:version-create", args=[team.slug]), {"source": source})


@given(source=yamlish_text)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(source="x: 2020-02-30")
@example(source="rules: []\nx: !!int 'abc'\n")
def test_editor__any_yamlish_text__checked_and_saved_without_a_5xx_naming_a_line(team, alice, source):
    client = client_for(alice)
    # Given any YAML-ish text, when the editor checks it as it is typed,
    checked = validate(client, team, source)
    # then the check answers with "Valid" or problems listed at a line,
    assert checked.status_code == 200
    valid = "Valid:" in text_of(checked)
    assert valid or LINE.search(checked.content.decode()), text_of(checked)
    # and saving it stores a draft, or refuses it (a 4xx) with those problems at their lines.
    saved = save(client, team, source)
    if valid:
        assert saved.status_code == 302
        return
    assert 400 <= saved.status_code < 500
    assert "Not saved" in text_of(saved) and LINE.search(saved.content.decode())


@pytest.mark.parametrize("source", ISSUE_10_INPUTS)
def test_editor__values_pyyaml_cannot_build__problems_at_their_line(team, alice, source):
    client = client_for(alice)
    assert LINE.search(validate(client, team, source).content.decode())
    response = save(client, team, source)
    assert response.status_code == 400
    assert not RuleSetVersion.objects.filter(team=team).exists()


def test_editor__unclosed_bracket__listed_where_it_opens_and_where_it_was_noticed(team, alice):
    # Given a "[" left open on line 3 that the parser notices on line 4,
    source = "rules:\n  - name: r\n    tools: [a, b\n    action: deny\n"
    # when the editor checks it,
    html = validate(client_for(alice), team, source).content.decode()
    # then the problem is listed at line 3 (its excerpt shown) and at line 4.
    assert LINE.findall(html) == ["3", "4"]
    assert "tools: [a, b" in html and "noticed at line 4" in html


@override_settings(RULE_SET_MAX_BYTES=1024, RULE_SET_MAX_RULES=2)
@pytest.mark.parametrize(
    ("source", "status", "limit"),
    [
        ("rules: []\n# " + "x" * 1100, 413, "max_bytes = 1024"),
        ("rules:\n" + "  - {name: r, action: deny}\n" * 3, 422, "max_rules = 2"),
    ],
)
def test_save__over_a_limit__refused_naming_it_and_nothing_stored(team, alice, source, status, limit):
    response = save(client_for(alice), team, source)
    assert response.status_code == status
    assert "Not saved" in text_of(response) and limit in text_of(response)
    assert not RuleSetVersion.objects.filter(team=team).exists()
