"""Every template the project ships keeps to the Content-Security-Policy (no inline script or style,
no event-handler attributes): the browser test sees the pages it opens; this sees every fragment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted(
    path
    for folder in [ROOT / "templates", *ROOT.glob("*/templates")]
    if ".venv" not in folder.parts
    for path in folder.rglob("*.html")
)
FORBIDDEN = {
    "inline <script>": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "<style> element": re.compile(r"<style\b", re.IGNORECASE),
    "style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "event-handler attribute": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "hx-on attribute": re.compile(r"\bhx-on[\w:.-]*\s*=", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "htmx js: expression": re.compile(r"\bhx-(?:vals|vars)\s*=\s*['\"]\s*js:", re.IGNORECASE),
}


def test_templates__found():
    # Given the project's template folders, Then there are templates to check (the next test is not empty)
    assert len(TEMPLATES) > 10


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: str(path.relative_to(ROOT)))
def test_template__strict_csp__no_inline_script_style_or_handlers(template):
    # Given a template, When its text is searched for what the CSP refuses
    text = template.read_text()
    found = [
        f"{what} at line {text.count(chr(10), 0, match.start()) + 1}: {match.group(0)!r}"
        for what, pattern in FORBIDDEN.items()
        for match in pattern.finditer(text)
    ]
    # Then there is none: scripts and styles belong in static/
    assert found == []
