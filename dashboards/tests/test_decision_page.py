"""One decision's page (dashboard:decision): the record, why (rule, condition, marked arguments),
the approval, the chain with its neighbours and the verify button; access as on the overview."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from policies.models import ToolPolicy
from tenancy.models import ApiKey, Membership
from tenancy.services import api_key_create
from tests.factories import ApprovalFactory, TeamFactory, UserFactory, publish_rules, record_decision

pytestmark = pytest.mark.django_db

RULES = """\
rules:
  - name: pii_exports
    tool: run_data_export
    when: args.include_pii == true && (args.rows > 100000 || args.destination.startsWith("s3://public"))
    action: require_approval
    approvers: [compliance]
"""


def member_client(team) -> Client:
    user = UserFactory()
    Membership.objects.create(user=user, team=team, role=Membership.Role.MEMBER)
    client = Client()
    client.force_login(user)
    return client


def page_url(team, decision_id) -> str:
    return reverse("dashboard:decision", args=[team.slug, decision_id])


def fired_export(team, **fields):
    """A decision the rule made: the destination (not the row count) made it fire."""
    values = {
        "tool_name": "run_data_export",
        "arguments": {"include_pii": True, "rows": 10, "destination": "s3://public-bucket/x", "note": "ok"},
        "context": {"session_id": "s-7", "custom": {"model": "gpt-5", "environment": "prod"}},
        "decision": "require_approval",
        "rule_id": "pii_exports",
        "rule_name": "pii_exports",
        "reason": "Matched rule: pii_exports",
        "severity": "medium",
        "rule_set_version": 1,
        "latency_ms": 3.25,
    }
    values.update(fields)
    return record_decision(team, **values)


def test_decision_page__member__shows_record_condition_marked_arguments_approval_and_chain():
    # Given a team's published rule, three chained decisions, the middle one raising an approval
    team = TeamFactory(name="Payments")
    publish_rules(team, RULES)
    key, _ = api_key_create(team=team, name="ci agent", scopes=None)
    first = record_decision(team, tool_name="search")
    approval = ApprovalFactory(
        team=team,
        tool_name="run_data_export",
        status="approved",
        resolved_by="alice",
        resolved_at=timezone.now(),
    )
    decision = fired_export(team, api_key_id=key.id, approval_id=approval.id)
    last = record_decision(team, tool_name="search")

    # When a member opens the middle one
    response = member_client(team).get(page_url(team, decision.id))

    # Then the full record is there
    assert response.status_code == 200
    html = response.content.decode()
    assert "<code>run_data_export</code>" in html
    assert 'data-field="latency">3.25 ms' in html
    assert 'data-field="api_key">ci agent<' in html
    assert "Server (validate, the team&#x27;s rules)" in html
    assert 'data-field="enforcement">Strict' in html and 'data-field="mode">deterministic' in html
    assert f'href="{reverse("policies:version", args=[team.slug, 1])}"' in html
    # the rule with its condition, each part and whether it held
    assert (
        '<pre class="condition" data-condition>args.include_pii == true &amp;&amp; (args.rows &gt; 100000'
        in html
    )
    assert re.search(r'class="fired" data-held="true">.*?<code>args.destination.startsWith', html, re.S)
    assert re.search(r'<li class="" data-held="false">.*?<code>args.rows &gt; 100000</code>', html, re.S)
    # the arguments as JSON, the ones that made it fire marked, the others not
    assert '<mark data-path="destination">&quot;s3://public-bucket/x&quot;</mark>' in html
    assert '<mark data-path="include_pii">true</mark>' in html
    assert "&quot;rows&quot;: 10" in html and 'data-path="rows"' not in html.split('data-json="arguments"')[1]
    # the approval, with who decided and a link to it
    assert 'data-field="approval-status">Approved' in html and 'data-field="approval-by">alice' in html
    assert f'href="{reverse("approvals:detail", args=[approval.id])}"' in html
    # its place in the chain, the neighbours and the verify button
    assert f'data-field="sequence">#{decision.sequence}' in html
    assert f"<code>{decision.prev_hash}</code>" in html and f"<code>{decision.hash}</code>" in html
    assert decision.prev_hash == first.hash
    assert f'href="{page_url(team, first.id)}" rel="prev"' in html
    assert f'href="{page_url(team, last.id)}" rel="next"' in html
    assert f'action="{reverse("dashboard:audit-verify", args=[team.slug])}"' in html


def test_decision_page__first_and_newest__say_so_instead_of_links():
    team = TeamFactory()
    only = record_decision(team, tool_name="search")
    html = member_client(team).get(page_url(team, only.id)).content.decode()
    assert "no earlier decision" in html and "the newest decision" in html
    assert 'rel="prev"' not in html and 'rel="next"' not in html
    assert "None: this decision raised no approval." in html
    assert "No rule matched" in html


def test_decision_page__rule_gone_from_its_version__says_not_found():
    # Given a decision naming a rule its version does not have (and a version that does not exist)
    team = TeamFactory()
    publish_rules(team, RULES)
    renamed = fired_export(team, rule_id="old_rule", rule_name="Old rule")
    lost_version = fired_export(team, rule_set_version=9)

    # Then the page says where it looked
    client = member_client(team)
    assert (
        "Rule &#x27;Old rule&#x27; (old_rule) not found in version 1."
        in client.get(page_url(team, renamed.id)).content.decode()
    )
    assert (
        "not found in version 9 (the version no longer exists)."
        in client.get(page_url(team, lost_version.id)).content.decode()
    )


def test_decision_page__tool_policy__constraint_and_value_marked():
    # Given a decision by a tool policy's constraint
    team = TeamFactory()
    ToolPolicy.objects.create(
        team=team, tool_name="transfer", version=2, constraints=[{"argumentName": "amount", "maximum": 1000}]
    )
    decision = record_decision(
        team,
        tool_name="transfer",
        arguments={"amount": 5000, "to": "x"},
        decision="deny",
        rule_id="policy:transfer",
        rule_name="transfer policy v1",
        rule_set_version=None,
    )

    # When opened
    html = member_client(team).get(page_url(team, decision.id)).content.decode()

    # Then the constraint, its failure, the marked value and the version note are shown
    assert "amount: maximum 1000 — failed: value 5000 must be &lt;= 1000" in html
    assert '<mark data-path="amount">5000</mark>' in html
    assert "decided at version 1 and is at version 2 now" in html


def test_decision_page__hostile_argument_text__escaped_everywhere():
    # Given arguments whose keys and values are markup, and a rule reading one of them
    team = TeamFactory()
    publish_rules(
        team,
        'rules:\n  - name: evil\n    tool: t\n    when: args["<b>k</b>"].startsWith("<")\n    action: deny\n',
    )
    hostile = "<script>alert(1)</script>"
    decision = record_decision(
        team,
        tool_name="t",
        arguments={"<b>k</b>": hostile, "other": '"</pre><img src=x onerror=alert(1)>'},
        context={"agent_id": "<i>agent</i>"},
        decision="deny",
        rule_id="evil",
        rule_name="evil",
        rule_set_version=1,
    )

    # When opened
    html = member_client(team).get(page_url(team, decision.id)).content.decode()

    # Then no markup from the call reaches the page unescaped, and the marked value is still marked
    assert "<script>alert(1)" not in html and "<img src=x" not in html and "<b>k</b>" not in html
    assert "<i>agent</i>" not in html
    assert (
        '<mark data-path="&lt;b&gt;k&lt;/b&gt;">&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;</mark>'
        in html
    )


def test_decision_page__another_teams_decision__404():
    # Given a decision of another team, and a member of this team
    team, other = TeamFactory(), TeamFactory()
    theirs = record_decision(other, tool_name="search")
    client = member_client(team)

    # Then neither under this team's slug nor under theirs is it found
    assert client.get(page_url(team, theirs.id)).status_code == 404
    assert client.get(page_url(other, theirs.id)).status_code == 404


def test_decision_page__anonymous__sent_to_log_in():
    team = TeamFactory()
    decision = record_decision(team, tool_name="search")
    response = Client().get(page_url(team, decision.id))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_decision_page__deleted_key_and_approval__named_as_gone():
    team = TeamFactory()
    key, _ = api_key_create(team=team, name="temp", scopes=None)
    approval = ApprovalFactory(team=team)
    approval_id = approval.id
    decision = record_decision(
        team,
        tool_name="x",
        api_key_id=key.id,
        approval_id=approval_id,
        created_at=timezone.now() - timedelta(1),
    )
    ApiKey.objects.filter(pk=key.id).delete()
    approval.delete()
    html = member_client(team).get(page_url(team, decision.id)).content.decode()
    assert "a deleted key" in html and f"Approval <code>{approval_id}</code> is no longer stored." in html


def test_decision_page__queries__a_fixed_number_whatever_the_chain_holds(django_assert_num_queries):
    # Given a decision in the middle of a chain, with its rule's version, key and approval
    team = TeamFactory()
    publish_rules(team, RULES)
    key, _ = api_key_create(team=team, name="agent", scopes=None)
    for _ in range(5):
        record_decision(team, tool_name="search")
    decision = fired_export(team, api_key_id=key.id, approval_id=ApprovalFactory(team=team).id)
    for _ in range(5):
        record_decision(team, tool_name="search")
    client = member_client(team)
    client.get(page_url(team, decision.id))  # the session's first read

    # Then the page reads each thing once: neighbours by sequence, not by scanning the chain
    with django_assert_num_queries(PAGE_QUERIES):
        assert client.get(page_url(team, decision.id)).status_code == 200


# The session and the person, the team and the membership, the decision, its version's document,
# the key's name, the approval, the previous and the next decision; the shell's nav (the person's
# teams, approver groups and memberships, for the team switcher and the approvals badge).
PAGE_QUERIES = 13


def test_decision_page__deeply_nested_arguments__drawn_indented_then_on_one_line():
    # Given arguments nested 400 levels deep (the edge's JSON reader lets that in)
    team = TeamFactory()
    nested: dict = {"leaf": "<end>"}
    for _ in range(400):
        nested = {"n": nested}
    decision = record_decision(team, tool_name="deep", arguments=nested)

    # When opened, the page is drawn, the deep part on one line, still escaped
    response = member_client(team).get(page_url(team, decision.id))
    assert response.status_code == 200
    html = response.content.decode()
    assert "{&quot;n&quot;: {&quot;n&quot;:" in html and "&quot;&lt;end&gt;&quot;" in html


def test_decision_page__llm_verdict__shown_with_mode_and_escaped():
    # Given a decision a mode llm policy's exception judge had a say in, with hostile reasoning
    team = TeamFactory()
    decision = record_decision(
        team,
        tool_name="refund_customer",
        arguments={"amount": 250},
        decision="deny",
        mode="llm",
        rule_id="policy:refund_customer",
        rule_name="refund_customer policy v1",
        rule_set_version=None,
        metadata={
            "llm": {
                "applies": False,
                "exception": None,
                "reasoning": "<script>x</script> no duplicate charge",
                "model": "llama3.1",
                "cached": True,
                "error": None,
            }
        },
    )

    # When opened
    html = member_client(team).get(page_url(team, decision.id)).content.decode()

    # Then the mode and the model's verdict are shown, the reasoning as text
    assert '<dd data-field="mode">llm</dd>' in html
    assert '<dd data-field="llm_applies">no</dd>' in html
    assert "&lt;script&gt;x&lt;/script&gt; no duplicate charge" in html
    assert "<code>llama3.1</code> <small class=\"muted\">(cached verdict)</small>" in html
    assert "llm_error" not in html


def test_decision_page__no_model_asked__no_verdict_section():
    team = TeamFactory()
    decision = record_decision(team, tool_name="search", decision="allow")
    html = member_client(team).get(page_url(team, decision.id)).content.decode()
    assert 'id="llm-verdict"' not in html
