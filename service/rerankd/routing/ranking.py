"""The final order of an answer: best first, equal scores in document order, cut to `top_n`."""

from __future__ import annotations

import operator

from rerankd.domain import Scored

_BY_INDEX = operator.attrgetter("index")
_BY_SCORE = operator.attrgetter("score")


def rank(scores: list[Scored], top_n: int | None) -> list[Scored]:
    """Best first; equal scores in document order. Two stable sorts on C-level keys (no Python
    call per item): by index, then by score descending, which keeps equal scores in index order."""
    ranked = sorted(scores, key=_BY_INDEX)
    ranked.sort(key=_BY_SCORE, reverse=True)
    return ranked[:top_n] if top_n else ranked
