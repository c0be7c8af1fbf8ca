"""The cascade strategy over in-memory providers: the cut, the merge, top_n, usage, partials and
the fallback to the first stage."""

from __future__ import annotations

from typing import Any

import pytest
from rerankd import errors
from rerankd.config import CascadeStrategy, RetryConfig
from rerankd.domain import Scored
from rerankd.routing.policy import RoutePolicy
from rerankd.routing.strategies.cascade import Cascade

from tests.routing.conftest import deadline, query, router_over
from tests.routing.scripted import ScriptedProvider

TEXTS = [f"0.{n}" for n in (3, 8, 1, 9, 5, 2, 7, 4, 6, 0)]  # first-stage score = the text
FIRST_ORDER = [3, 1, 6, 8, 4, 7, 0, 5, 2, 9]  # 0.9, 0.8, 0.7, ...


def cascade(**config: Any) -> RoutePolicy:
    return RoutePolicy(
        retry=RetryConfig(max_attempts=1), strategy=Cascade(CascadeStrategy(kind="cascade", **config))
    )


def stages() -> tuple[ScriptedProvider, ScriptedProvider]:
    """A first stage that scores by the text, a second that prefers the opposite (1 - text)."""
    return ScriptedProvider("cheap"), ScriptedProvider("dear", score=lambda text: 1.0 - float(text))


async def test_the_second_stage_reranks_only_the_first_stages_best() -> None:
    cheap, dear = stages()
    ranked = await router_over(cheap, dear, policy=cascade(keep_top=3)).rerank(
        query(TEXTS), deadline=deadline()
    )
    assert len(cheap.calls[0].documents) == 10 and cheap.calls[0].top_n is None
    assert [d.text for d in dear.calls[0].documents] == ["0.9", "0.8", "0.7"]  # only the kept ones
    indices = [s.index for s in ranked.results]
    assert indices[:3] == [6, 1, 3]  # the second stage's order of the three (0.7, 0.8, 0.9 reversed)
    assert indices[3:] == FIRST_ORDER[3:]  # the rest follow in first-stage order
    assert [s.score for s in ranked.results[3:]] == [float(TEXTS[i]) for i in FIRST_ORDER[3:]]
    assert ranked.provider == "dear" and ranked.model == "dear-model"
    assert ranked.usage.documents == 13 and ranked.usage.search_units == 2  # both stages
    assert [a.provider for a in ranked.attempts] == ["cheap", "dear"]


async def test_top_n_within_keep_top_returns_only_second_stage_results() -> None:
    cheap, dear = stages()
    router = router_over(cheap, dear, policy=cascade(keep_top=4))
    ranked = await router.rerank(query(TEXTS, top_n=2), deadline=deadline())
    assert [s.index for s in ranked.results] == [8, 6]  # 0.6 and 0.7: best for the second stage
    assert dear.calls[0].top_n == 2


async def test_top_n_past_keep_top_fills_in_first_stage_order() -> None:
    cheap, dear = stages()
    router = router_over(cheap, dear, policy=cascade(keep_top=2))
    ranked = await router.rerank(query(TEXTS, top_n=4), deadline=deadline())
    assert [s.index for s in ranked.results] == [1, 3, 6, 8]
    assert dear.calls[0].top_n is None


async def test_min_score_passes_on_only_documents_at_or_above_it() -> None:
    cheap, dear = stages()
    router = router_over(cheap, dear, policy=cascade(keep_top=None, min_score=0.65))
    ranked = await router.rerank(query(TEXTS), deadline=deadline())
    assert sorted(d.text for d in dear.calls[0].documents) == ["0.7", "0.8", "0.9"]
    assert [s.index for s in ranked.results][:3] == [6, 1, 3]


async def test_when_nothing_passes_min_score_the_first_stage_answers() -> None:
    cheap, dear = stages()
    router = router_over(cheap, dear, policy=cascade(keep_top=None, min_score=5.0))
    ranked = await router.rerank(query(TEXTS), deadline=deadline())
    assert dear.calls == [] and ranked.provider == "cheap"
    assert [s.index for s in ranked.results] == FIRST_ORDER


async def test_progressive_streams_get_the_first_stage_scores_as_a_partial() -> None:
    cheap, dear = stages()
    partials: list[list[Scored]] = []
    router = router_over(cheap, dear, policy=cascade(keep_top=3))
    await router.rerank(query(TEXTS), deadline=deadline(), on_partial=partials.append)
    assert len(partials) == 1 and [s.index for s in partials[0]] == FIRST_ORDER


async def test_a_failing_second_stage_falls_back_to_the_first_stage_when_the_route_says_so() -> None:
    cheap = ScriptedProvider("cheap")
    dear = ScriptedProvider("dear", default=errors.Unavailable("dear: 503", provider="dear"))
    router = router_over(cheap, dear, policy=cascade(keep_top=3, fallback_to_first_stage=True))
    ranked = await router.rerank(query(TEXTS, top_n=5), deadline=deadline())
    assert ranked.provider == "cheap" and [s.index for s in ranked.results] == FIRST_ORDER[:5]
    assert [(a.provider, a.outcome) for a in ranked.attempts] == [("cheap", "OK"), ("dear", "UNAVAILABLE")]


async def test_a_failing_second_stage_is_the_answer_without_the_fallback() -> None:
    cheap = ScriptedProvider("cheap")
    dear = ScriptedProvider("dear", default=errors.Unavailable("dear: 503", provider="dear"))
    with pytest.raises(errors.Unavailable):
        await router_over(cheap, dear, policy=cascade(keep_top=3)).rerank(query(TEXTS), deadline=deadline())


async def test_a_caller_error_in_the_second_stage_is_not_hidden_by_the_fallback() -> None:
    cheap = ScriptedProvider("cheap")
    dear = ScriptedProvider("dear", [errors.InvalidArgument("dear: bad", provider="dear")])
    router = router_over(cheap, dear, policy=cascade(keep_top=3, fallback_to_first_stage=True))
    with pytest.raises(errors.InvalidArgument):
        await router.rerank(query(TEXTS), deadline=deadline())


def test_a_cascade_route_needs_two_targets_and_a_cut() -> None:
    from pydantic import ValidationError
    from rerankd.config import RouteConfig

    with pytest.raises(ValidationError, match="two targets"):
        RouteConfig(targets=[{"provider": "a"}], strategy={"kind": "cascade"})  # type: ignore[list-item, arg-type]
    with pytest.raises(ValidationError, match="keep_top, min_score or both"):
        CascadeStrategy(kind="cascade", keep_top=None)
