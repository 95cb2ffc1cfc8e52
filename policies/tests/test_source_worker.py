"""Sources are loaded in a worker process (policies/source_worker.py): its answers and its
refusals arrive whole, and a full queue is a 503, not a pile-up."""

from __future__ import annotations

import pytest
from django.test import override_settings

from policies import source_worker
from policies.engine import RuleSetError
from policies.engine.errors import RuleSetTooLarge
from policies.engine.source import Limits


def test_load_source__in_the_worker__the_document_and_located_problems_come_back():
    # Given the worker process (one, the default), when a document and a broken one are loaded,
    document = source_worker.load_source(
        "rules: [{name: r, action: deny}]", content_type="yaml", limits=Limits()
    )
    with pytest.raises(RuleSetError) as caught:
        source_worker.load_source("rules: []\nx: !!int 'abc'\n", content_type="yaml", limits=Limits())
    # then the document, and the problem with its path and line, arrive as the engine made them.
    assert document["rules"][0]["id"] == "r"
    assert source_worker._pool is not None
    assert [(p.path, p.line) for p in caught.value.problems] == [("x", 2)]


def test_load_source__over_a_limit__the_limit_survives_the_trip():
    with pytest.raises(RuleSetTooLarge) as caught:
        source_worker.load_source("rules: []\n", content_type="yaml", limits=Limits(max_bytes=5))
    assert (caught.value.limit, caught.value.maximum, caught.value.actual) == ("max_bytes", 5, 10)


@override_settings(RULE_SET_PARSE_WORKERS=1, RULE_SET_PARSE_QUEUE=0)
def test_load_source__no_free_slot__503_parser_busy(monkeypatch):
    # Given every slot taken (a queue of 0 and the one worker busy),
    monkeypatch.setattr(source_worker, "_pool", None)
    _, slots = source_worker._executor()
    assert slots.acquire(blocking=False)
    try:
        # when another document arrives, then it is refused at once as busy.
        with pytest.raises(source_worker.ParserBusy):
            source_worker.load_source("rules: []", content_type="yaml", limits=Limits())
    finally:
        slots.release()
        source_worker._discard(source_worker._pool)
