"""Long documents as passages: the setting, the windows over a document's tokens, the pooling.

A document longer than a model takes is split into overlapping windows of `tokens` tokens,
neighbours sharing `stride`, at most `limit` a document; every window is scored with the query and
the document's score is the `pool` (max, mean or first) of its windows'. The embedded model does
this with its own tokenizer (rerankd.local.model); hosted providers get the windows' text
(rerankd.providers.passages). Both pool here, and say which window won (`domain.Passage`: its
character offsets in the text scored, its index and the document's window count).

Nothing here imports onnxruntime or a tokenizer: the setting is parsed from configuration and
request parameters by any provider.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rerankd import errors
from rerankd.domain import Passage, Scored

POOLS = ("max", "mean", "first")
PARAMETER = "passages"  # the request's `parameters` key (rerankd's own: never sent to a provider)


@dataclass(frozen=True, slots=True)
class Passages:
    """Long documents as overlapping windows of `tokens` document tokens, `stride` of them shared
    by neighbours, at most `limit` windows a document; its score is the `pool` of theirs."""

    tokens: int = 256
    stride: int = 64
    pool: str = "max"
    limit: int = 64

    @classmethod
    def parse(cls, value: Any) -> Passages | None:
        """From config or request parameters: a mapping, true (the defaults), or false/None (off).

        Raises ValueError saying what is wrong.
        """
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if not isinstance(value, Mapping):
            raise ValueError("must be a mapping of tokens, stride, pool, limit (or true/false)")
        unknown = sorted(set(value) - {"tokens", "stride", "pool", "limit"})
        if unknown:
            raise ValueError(f"has unknown keys {unknown} (known: tokens, stride, pool, limit)")
        default = cls()
        try:
            passages = cls(
                tokens=_whole(value.get("tokens", default.tokens)),
                stride=_whole(value.get("stride", default.stride)),
                pool=str(value.get("pool", default.pool)),
                limit=_whole(value.get("limit", default.limit)),
            )
        except (TypeError, ValueError):
            raise ValueError("tokens, stride and limit must be whole numbers") from None
        if passages.tokens < 8 or not 0 <= passages.stride <= passages.tokens // 2 or passages.limit < 1:
            raise ValueError("needs tokens >= 8, 0 <= stride <= tokens / 2 and limit >= 1")
        if passages.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {passages.pool!r}")
        return passages

    def most_tokens(self, window: int | None = None) -> int:
        """Document tokens the windows cover at most (the rest of a longer document is cut)."""
        window = self.tokens if window is None else window
        stride = min(self.stride, window // 2)
        count = 1 if self.pool == "first" else self.limit
        return window + (count - 1) * (window - stride)


def requested(parameters: Mapping[str, Any], default: Passages | None) -> Passages | None:
    """The request's `parameters.passages` (INVALID_ARGUMENT naming it when malformed), else `default`."""
    if PARAMETER not in parameters:
        return default
    try:
        return Passages.parse(parameters[PARAMETER])
    except ValueError as exc:
        raise errors.invalid(f"parameters.{PARAMETER}", str(exc)) from None


def _whole(value: Any) -> int:
    if isinstance(value, bool) or float(value) != int(value):
        raise ValueError(value)
    return int(value)


def spans(
    offsets: Sequence[tuple[int, int]], passages: Passages, cut: int | None = None
) -> list[tuple[int, int]]:
    """Character spans [start, end) of the windows over tokens with these character `offsets`.

    Windows of `passages.tokens` tokens start every `tokens - stride` tokens, as tokenizers' own
    overflowing windows do; at most `passages.limit` (one with pool `first`), and no further than
    `cut` tokens when the caller cut the document. A text without tokens is one empty window.
    """
    window = passages.tokens
    step = window - min(passages.stride, window // 2)
    count = min(len(offsets), passages.most_tokens(window), cut if cut is not None else len(offsets))
    if count == 0:
        return [(0, 0)]
    found = []
    start = 0
    while True:
        end = min(start + window, count)
        found.append((offsets[start][0], offsets[end - 1][1]))
        if end >= count:
            return found
        start += step


class Window(Protocol):
    """A scored window: whose document it is, and which characters of it."""

    @property
    def document(self) -> int: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


def pool(windows: Sequence[Window], scores: Sequence[float], documents: int, how: str) -> list[Scored]:
    """One score per document from its windows' (max, mean or first), with the winning window.

    `scores[i]` is window i's; every document has at least one window. The winner is the best
    scored window (the first of equals), whatever `how` pools.
    """
    mine: list[list[int]] = [[] for _ in range(documents)]
    for position, window in enumerate(windows):
        mine[window.document].append(position)
    pooled = []
    for index, positions in enumerate(mine):
        best = max(range(len(positions)), key=lambda w: scores[positions[w]])
        if how == "mean":
            score = sum(scores[p] for p in positions) / len(positions)
        else:
            score = scores[positions[best]]
        won = windows[positions[best]]
        pooled.append(Scored(index, score, Passage(won.start, won.end, best, len(positions))))
    return pooled
