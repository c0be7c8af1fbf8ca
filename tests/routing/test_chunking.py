"""Chunks past a target's max_documents: split, scored, shifted, merged, streamed as partials."""

from __future__ import annotations

import pytest
from rerankd import errors
from rerankd.domain import Passage, Scored

from tests.routing.conftest import deadline, query, router_over
from tests.routing.scripted import ScriptedProvider

TEXTS = [f"0.{n}" for n in (3, 8, 1, 9, 5, 2, 7, 4, 6, 0)]  # ten documents, scores = text


async def test_a_long_list_is_split_merged_and_cut_to_top_n_after_the_merge() -> None:
    provider = ScriptedProvider("a", max_documents=3)
    ranked = await router_over(provider).rerank(query(TEXTS, top_n=4), deadline=deadline())
    assert [len(call.documents) for call in provider.calls] == [3, 3, 3, 1]
    assert all(call.top_n is None for call in provider.calls)  # each chunk scores every document
    assert [s.index for s in ranked.results] == [3, 1, 6, 8]  # 0.9, 0.8, 0.7, 0.6 across chunks
    assert ranked.usage.documents == 10 and ranked.usage.search_units == 4
    assert [a.outcome for a in ranked.attempts] == ["OK"] * 4


async def test_merged_chunks_keep_each_documents_winning_passage() -> None:
    provider = ScriptedProvider("a", max_documents=3, passages=True)
    ranked = await router_over(provider).rerank(query(TEXTS), deadline=deadline())
    assert len(provider.calls) == 4
    assert [s.passage for s in ranked.results] == [Passage(1, 3, 1, 2)] * len(TEXTS)


async def test_each_finished_chunk_goes_to_on_partial_with_whole_request_indices() -> None:
    provider = ScriptedProvider("a", max_documents=4)
    partials: list[list[Scored]] = []
    await router_over(provider).rerank(query(TEXTS), deadline=deadline(), on_partial=partials.append)
    assert sorted(len(p) for p in partials) == [2, 4, 4]
    seen = sorted(s.index for part in partials for s in part)
    assert seen == list(range(10))
    assert all(s.score == float(TEXTS[s.index]) for part in partials for s in part)


async def test_a_failed_chunk_fails_the_target_and_the_next_target_serves_everything() -> None:
    broken = errors.ProviderMisconfigured("a: bad key", provider="a")
    first = ScriptedProvider("a", [None, broken], max_documents=5)
    second = ScriptedProvider("b")
    ranked = await router_over(first, second).rerank(query(TEXTS), deadline=deadline())
    assert ranked.provider == "b" and len(second.calls) == 1 and len(ranked.results) == 10
    assert any(a.message.startswith("chunk 2/2: ") for a in ranked.attempts)


async def test_a_caller_error_in_any_chunk_is_the_one_reported() -> None:
    bad = errors.InvalidArgument("a: bad document", provider="a")
    first = ScriptedProvider("a", [errors.Unavailable("a: 503", provider="a"), bad], max_documents=5)
    first.default = errors.Unavailable("a: 503", provider="a")
    with pytest.raises(errors.InvalidArgument):
        await router_over(first).rerank(query(TEXTS), deadline=deadline())
