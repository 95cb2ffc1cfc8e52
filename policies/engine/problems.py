"""Where a checker reports what is wrong with a document, one problem per path.

``constraints._Problems`` and ``document._Collector`` both fit: a checker of one part of a
policy (output rules, rate limits, LLM configuration) takes any ``ProblemSink``, so it can be
called from whichever whole-document checker holds the list, and every problem keeps its path
(``outputRules[1].output_conditions[0].operator``).

Pure Python: no Django.
"""

from __future__ import annotations

from typing import Protocol


class ProblemSink(Protocol):
    def add(self, path: str, message: str) -> None: ...
