"""The shortcuts taken on the hot path (bench/results/gateway.md) answer exactly as the long way does.

- validate() skips the per-document check for plain ASCII documents within the limits (one
  document at a time, and for a whole request of them at once): the verdict (every violation, in
  order) must equal checking each document in full.
- response_message() builds results in place with add(): the message must equal one built from
  result_messages(), with and without return_documents.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rerankd import errors
from rerankd.api import convert
from rerankd.domain import Attempt, Document, Ranked, RerankQuery, Scored, TraceContext, Usage
from rerankd.v1 import rerank_pb2 as pb
from rerankd.validation import _MAX_VIOLATIONS, Limits, _check_document, validate

LIMITS = Limits(max_document_bytes=24, max_document_fields=2)
# Near the edges: ASCII and not, blank, whitespace only, lone surrogates, long enough to pass 24 bytes.
_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from("ab \t\n\x1cé€\ud800"), max_size=30),
    st.sampled_from(["", " ", "\t\n", "x" * 24, "x" * 25, "é" * 12, "é" * 13, "ok"]),
)
_DOC = st.builds(
    Document,
    text=_TEXT,
    id=st.one_of(st.just(""), _TEXT),
    fields=st.one_of(
        st.just({}), st.dictionaries(st.sampled_from(["title", "text", "x"]), _TEXT, max_size=3)
    ),
)


def _reference(query: RerankQuery, limits: Limits) -> list[tuple[str, str]]:
    """Every document checked in full, as before the shortcut (the other checks see no violations)."""
    found: list[tuple[str, str]] = []
    for index, doc in enumerate(query.documents):
        if len(found) >= _MAX_VIOLATIONS:
            break
        _check_document(index, doc, query.rank_fields, limits, found)
    return found


def _verdict(query: RerankQuery, limits: Limits) -> list[tuple[str, str]]:
    try:
        validate(query, limits)
    except errors.InvalidArgument as exc:
        return list(exc.field_violations)
    return []


@settings(max_examples=400, deadline=None)
@given(
    documents=st.lists(_DOC, min_size=1, max_size=30),
    rank_fields=st.sampled_from([(), ("title",), ("text", "title")]),
)
def test_document_checks_agree_with_the_full_check(
    documents: list[Document], rank_fields: tuple[str, ...]
) -> None:
    query = RerankQuery(model="m", query="q", documents=documents, rank_fields=rank_fields)
    assert _verdict(query, LIMITS) == _reference(query, LIMITS)


# Requests of plain documents (ASCII, no fields), where the whole-request shortcut applies, and the
# near misses it must hand to the per-document check: blank, whitespace only, one byte too long.
_PLAIN_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from("ab \t\n"), max_size=26), st.sampled_from(["", " ", "x" * 24, "y" * 25])
)
_PLAIN_DOC = st.builds(
    Document, text=_PLAIN_TEXT, id=st.one_of(st.just(""), st.sampled_from(["i", "id" * 12]))
)


@settings(max_examples=400, deadline=None)
@given(documents=st.lists(_PLAIN_DOC, min_size=1, max_size=30))
def test_plain_requests_agree_with_the_full_check(documents: list[Document]) -> None:
    query = RerankQuery(model="m", query="q", documents=documents)
    assert _verdict(query, LIMITS) == _reference(query, LIMITS)


def test_the_shortcut_still_refuses() -> None:
    docs = [
        Document("fine"),
        Document("x" * 25),
        Document("   "),
        Document("a", id="i" * 24),
        Document("é" * 13),
    ]
    query = RerankQuery(model="m", query="q", documents=docs)
    assert [field for field, _ in _verdict(query, LIMITS)] == [f"documents[{i}]" for i in (1, 2, 3, 4)]


@pytest.mark.parametrize("return_documents", [False, True])
def test_response_built_in_place_equals_the_copied_one(return_documents: bool) -> None:
    request = pb.RerankRequest(
        query="q",
        documents=[pb.Document(id=f"d{i}", text=f"text {i}", fields={"k": str(i)}) for i in range(50)],
        return_documents=return_documents,
    )
    ranked = Ranked(
        [Scored(i, 1.0 - i / 64) for i in (7, 3, 49, 0, 12)],
        Usage(search_units=1, documents=50),
        "prov",
        "model",
        [Attempt(provider="prov", model="model", outcome="OK", duration_ms=1.5, attempt=1, message="")],
    )
    trace = TraceContext(trace_id="a" * 32, span_id="b" * 16)
    built = convert.response_message(ranked, request, request_id="r1", trace=trace)
    copied = pb.RerankResponse(
        id="r1",
        model="model",
        provider="prov",
        results=convert.result_messages(ranked.results, request, return_documents),
        usage=convert.usage_message(ranked.usage),
        trace=convert.trace_message(trace),
        attempts=convert.attempt_messages(ranked.attempts),
    )
    assert built == copied and built.SerializeToString(deterministic=True) == copied.SerializeToString(
        deterministic=True
    )
    assert [r.index for r in built.results] == [7, 3, 49, 0, 12]
    assert all(r.HasField("document") == return_documents for r in built.results)
