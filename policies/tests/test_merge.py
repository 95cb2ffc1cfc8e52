"""A draft's rules merged into the active document as its author wrote it (pure, no database)."""

from __future__ import annotations

import json

from policies.engine import load_rule_set
from policies.engine.merge import merge_proposed_rules

SHORT = {"name": "no_sms", "tool": "send_sms", "action": "deny"}
IR = {"id": "cap", "name": "Cap", "action": "block", "tools": ["transfer"]}


def test_merge__same_id_replaced_in_place_new_ids_appended_in_order():
    base = {"rules": [SHORT, IR], "settings": {"default_action": "block"}, "fixtures": []}
    replacement = {"id": "no_sms", "name": "no_sms", "action": "allow", "tools": ["send_sms"]}
    new = {"id": "new", "name": "New", "action": "log"}
    merged = merge_proposed_rules(base, [new, replacement])
    assert merged["rules"] == [replacement, IR, new]
    assert merged["settings"] == {"default_action": "block"} and merged["fixtures"] == []
    assert base["rules"] == [SHORT, IR]  # the base document is not modified
    assert [r["id"] for r in load_rule_set(json.dumps(merged), content_type="json")["rules"]] == [
        "no_sms",
        "cap",
        "new",
    ]


def test_merge__no_active_version_or_a_bare_list__becomes_a_document():
    assert merge_proposed_rules(None, [IR]) == {"rules": [IR]}
    assert merge_proposed_rules([SHORT], [IR]) == {"rules": [SHORT, IR]}


def test_merge__id_falls_back_to_name_as_the_loader_assigns_it():
    by_name = {"name": "Cap", "action": "allow"}
    merged = merge_proposed_rules({"rules": [{"name": "Cap", "action": "block"}]}, [by_name])
    assert merged["rules"] == [by_name]
