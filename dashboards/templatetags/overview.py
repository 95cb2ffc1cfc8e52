"""Template tags of the team overview: the server-drawn decision charts (SVG with presentation
attributes only: the CSP allows no style attributes and no scripts), durations in words, and links
to team pages that other parts of the dashboard may not have mounted yet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django import template
from django.urls import NoReverseMatch, Resolver404, resolve, reverse

from approvals.display import duration_words
from dashboards.stats import OUTCOMES, Series

register = template.Library()

# The chart's own coordinates; CSS scales the SVG to its card's width (viewBox keeps the ratio).
CHART_WIDTH = 600
CHART_HEIGHT = 160
# Stacked bottom to top in this order; the colours are app.css's .allow / .approval / .deny.
FILLS = {"allow": "#126b2f", "require_approval": "#d19a00", "deny": "#a4161a"}
LABELS = {"allow": "allowed", "deny": "denied", "require_approval": "approval required"}


@dataclass(frozen=True, slots=True)
class Segment:
    outcome: str
    y: float
    height: float
    fill: str


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    label: str  # "12:07 UTC: 2 allowed, 0 denied, 1 approval required"
    time: str
    total: int
    counts: dict[str, int]
    segments: tuple[Segment, ...]


def _scale_top(peak: int) -> int:
    """The y axis' top: the peak rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    if peak <= 1:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= peak:
                return step * magnitude
        magnitude *= 10


def _time_label(series: Series, index: int) -> str:
    start = series.buckets[index].start
    return start.strftime("%H:%M")


def chart_bars(series: Series) -> tuple[list[Bar], int]:
    """Each bucket as a stacked bar in the chart's coordinates, and the y axis' top."""
    top = _scale_top(series.peak)
    slot = CHART_WIDTH / max(1, len(series.buckets))
    width = max(1.0, slot * 0.8)
    bars = []
    for index, bucket in enumerate(series.buckets):
        y = float(CHART_HEIGHT)
        segments = []
        for outcome in OUTCOMES:
            count = bucket.counts[outcome]
            if not count:
                continue
            height = CHART_HEIGHT * count / top
            y -= height
            segments.append(Segment(outcome, round(y, 2), round(height, 2), FILLS[outcome]))
        time = _time_label(series, index)
        words = ", ".join(f"{bucket.counts[o]} {LABELS[o]}" for o in OUTCOMES)
        bars.append(
            Bar(
                x=round(index * slot + (slot - width) / 2, 2),
                width=round(width, 2),
                label=f"{time} UTC: {words}",
                time=time,
                total=bucket.total,
                counts=bucket.counts,
                segments=tuple(segments),
            )
        )
    return bars, top


@register.inclusion_tag("dashboards/_overview_chart.html")
def decision_chart(series: Series, *, chart_id: str, title: str) -> dict[str, Any]:
    """A stacked bar chart of ``series``: an SVG with role="img", a <title> and <desc> (the
    totals), a title per bar for pointers, and a visually hidden table of the non-empty buckets
    for screen readers."""
    bars, top = chart_bars(series)
    totals = series.totals
    summary = (
        f"{series.total} decisions from {series.start:%H:%M} to {series.end:%H:%M} UTC: "
        + ", ".join(f"{totals[o]} {LABELS[o]}" for o in OUTCOMES)
        + f"; at most {series.peak} in one bar."
    )
    step_minutes = int(series.step.total_seconds() // 60)
    return {
        "chart_id": chart_id,
        "title": title,
        "summary": summary,
        "bars": bars,
        "busy_bars": [bar for bar in bars if bar.total],
        "top": top,
        "half": top / 2,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "mid_y": CHART_HEIGHT / 2,
        "step": f"{step_minutes} min",
        "first_time": _time_label(series, 0),
        "middle_time": _time_label(series, len(series.buckets) // 2),
        "outcomes": [(o, LABELS[o], FILLS[o]) for o in OUTCOMES],
    }


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds in words: ``75`` -> ``1 min 15 s`` (approvals.display.duration_words)."""
    return duration_words(seconds)


@register.filter
def age(moment: datetime | None, now: datetime) -> str:
    """How long ago ``moment`` was, in words ("45 s", "3 h 12 min"), never "0 minutes"."""
    if moment is None:
        return duration_words(None)
    return duration_words((now - moment).total_seconds())


@register.simple_tag
def team_page_url(name: str, slug: str, **params: str) -> str:
    """The URL of page ``name`` of team ``slug`` (with ``params`` as its query), or "" while that
    page is not mounted (another part of the dashboard adds it): the link is then left out
    rather than the page failing."""
    try:
        url = reverse(name, kwargs={"slug": slug})
    except NoReverseMatch:
        return ""
    query = urlencode({key: value for key, value in params.items() if value})
    return f"{url}?{query}" if query else url


@register.simple_tag
def team_settings_url(slug: str) -> str:
    """/dashboard/teams/<slug>/settings/ once the team settings pages answer there, else ""."""
    url = f"/dashboard/teams/{slug}/settings/"
    try:
        resolve(url)
    except Resolver404:
        return ""
    return url
