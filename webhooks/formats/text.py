"""Length limits shared by the formats. Slack, PagerDuty and ArcSight state their limits in
"characters"; JavaScript and Java count UTF-16 code units, Python counts code points. We
count UTF-16 units, which is never fewer, so a clipped text fits whichever the receiver means
(an emoji is 1 code point but 2 units)."""

from __future__ import annotations

from collections.abc import Iterable

ELLIPSIS = "…"


def units(text: str) -> int:
    """The UTF-16 length of ``text``."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def clip(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` units, else its start and an ellipsis, in ``limit``."""
    return clip_pieces(text, limit)


def clip_pieces(pieces: Iterable[str], limit: int) -> str:
    """Joins ``pieces`` (one character each, or one character's escape) and, when that is
    longer than ``limit`` units, cuts between pieces, never inside an escape, so ``&amp;``
    or ``\\=`` is kept whole or dropped whole."""
    pieces = list(pieces)
    if sum(units(piece) for piece in pieces) <= limit:
        return "".join(pieces)
    kept: list[str] = []
    used, budget = 0, limit - units(ELLIPSIS)
    for piece in pieces:
        size = units(piece)
        if used + size > budget:
            break
        kept.append(piece)
        used += size
    return "".join(kept) + ELLIPSIS
