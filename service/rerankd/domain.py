"""Plain data the core speaks: queries, documents, scores, usage and trace context.

Nothing here knows about protobuf, HTTP or gRPC; the API layer converts to and from these types.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rerankd import errors


class Truncation(enum.Enum):
    """What to do with a query + document pair longer than the model accepts."""

    END = "END"  # cut at the model's limit (the default)
    NONE = "NONE"  # refuse the request, naming the document


# Document and Scored are made once per document of every request (a thousand per call is usual),
# so they are not frozen: a frozen dataclass's __init__ costs about 2.5x (0.7 us more per object).
# Nothing mutates them; treat them as values.
@dataclass(slots=True)
class Document:
    """One candidate: caller id, text and extra named fields."""

    text: str = ""
    id: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TraceContext:
    """Tracing identifiers of one call (W3C sizes: 32-hex trace id, 16-hex span ids)."""

    trace_id: str = ""
    span_id: str = ""
    parent_span_id: str = ""
    span_name: str = ""
    tracestate: str = ""


@dataclass(frozen=True, slots=True)
class RerankQuery:
    """A validated rerank request, independent of the front door it came through."""

    model: str
    query: str
    documents: Sequence[Document]
    top_n: int | None = None  # None: all
    return_documents: bool = False
    rank_fields: tuple[str, ...] = ()
    truncation: Truncation = Truncation.END
    max_tokens_per_doc: int | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    trace: TraceContext = field(default_factory=TraceContext)
    metadata: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Passage:
    """The window of a long document that decided its score: characters [start, end) of its text,
    window `index` of `count` (documents scored as passages: rerankd.passages)."""

    start: int
    end: int
    index: int
    count: int


@dataclass(slots=True)
class Scored:
    """A document position and its relevance score (and, scored as passages, the best passage)."""

    index: int
    score: float
    passage: Passage | None = None


@dataclass(slots=True)
class Usage:
    """What a call cost, in the units providers bill."""

    search_units: int = 0
    rerank_units: int = 0
    total_tokens: int = 0
    documents: int = 0

    def add(self, other: Usage) -> None:
        self.search_units += other.search_units
        self.rerank_units += other.rerank_units
        self.total_tokens += other.total_tokens
        self.documents += other.documents


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one target: who, how it ended (a gRPC code name) and how long it took."""

    provider: str
    model: str
    outcome: str
    duration_ms: float
    attempt: int = 1
    message: str = ""
    hedge: str = ""  # on a hedged request: "won" or "cancelled" (routing/strategies/hedge.py)


@dataclass(slots=True)
class Ranked:
    """The router's answer: results best first (indices into RerankQuery.documents)."""

    results: list[Scored]
    usage: Usage
    provider: str
    model: str
    attempts: list[Attempt] = field(default_factory=list)
    cache: str = ""  # "hit" or "miss" when the route caches answers; "" when it does not


def render_text(doc: Document, rank_fields: Sequence[str]) -> str | None:
    """The text a scorer sees for `doc`: its text, or the named fields rendered as lines.

    One rank field gives that field's value; several give "name: value" lines in the order
    named. The field name "text" means Document.text. Returns None when nothing is there to score.
    """
    if not rank_fields:
        return doc.text if doc.text.strip() else None
    parts: list[tuple[str, str]] = []
    for name in rank_fields:
        value = doc.text if name == "text" and "text" not in doc.fields else doc.fields.get(name)
        if value is not None and value.strip():
            parts.append((name, value))
    if not parts:
        return None
    if len(rank_fields) == 1:
        return parts[0][1]
    return "\n".join(f"{name}: {value}" for name, value in parts)


def rendered_texts(documents: Sequence[Document], rank_fields: Sequence[str]) -> list[str]:
    """`render_text` of every document; one with nothing to score is INVALID_ARGUMENT naming it."""
    texts = []
    for index, doc in enumerate(documents):
        text = render_text(doc, rank_fields)
        if text is None:
            raise errors.invalid(f"documents[{index}]", "has no text to rank")
        texts.append(text)
    return texts
