"""A tool policy changed on the policies page is what validate enforces on the very next call
(the page is policies', the check is runtime's: a cross-app test)."""

from __future__ import annotations

import asyncio

import pytest

from policies import selectors
from policies.tests.conftest import dana, team  # noqa: F401 - fixtures
from policies.tests.test_views_tool_policies import LIMIT, TRANSFER, client_for, post_body, url
from runtime import validate
from tests.factories import ToolPolicyFactory


@pytest.mark.django_db(transaction=True)
def test_tool_policy_page__admin_replaces__validate_enforces_the_new_limit_at_once(team, dana):  # noqa: F811
    # Given a policy validate has already read (and cached)
    policy = ToolPolicyFactory(team=team, tool_name="transfer_funds", constraints=LIMIT)
    selectors.forget_cached_tool_policies(team_id=team.id)

    def refused(amount: int) -> bool:
        arguments = {"amount": amount}
        return (
            asyncio.run(
                validate.tool_policy_refusal(team_id=team.id, tool_name="transfer_funds", arguments=arguments)
            )
            is not None
        )

    assert refused(5000)
    # When the admin tightens it on the page
    tightened = {**TRANSFER, "constraints": [{"argumentName": "amount", "enabled": True, "maximum": 100}]}
    assert post_body(client_for(dana), url("replace", team, policy), tightened).status_code == 302
    # Then validate's check follows version 2 on the next call
    assert refused(500)
    assert not refused(50)
    selectors.forget_cached_tool_policies(team_id=team.id)
