"""The hedge strategy over in-memory providers: when a hedge goes out, who wins, who is cancelled,
and the budget that caps the extra load. Delays are long against the margins asserted."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rerankd import errors
from rerankd.config import HedgeStrategy, RetryConfig
from rerankd.routing.policy import RoutePolicy
from rerankd.routing.strategies.hedge import MIN_LATENCIES, Hedge, HedgeBudget, LatencyWindow

from tests.routing.conftest import FAST_RETRY, deadline, query, router_over
from tests.routing.scripted import HANG, ScriptedProvider, Wait


def hedged(**config: Any) -> RoutePolicy:
    return RoutePolicy(retry=FAST_RETRY, strategy=Hedge(HedgeStrategy(kind="hedge", **config)))


def marks(ranked: Any) -> list[tuple[str, str, str]]:
    return [(a.provider, a.outcome, a.hedge) for a in ranked.attempts]


async def test_a_slow_attempt_is_hedged_and_the_loser_is_cancelled() -> None:
    slow, fast = ScriptedProvider("a", [HANG]), ScriptedProvider("b")
    router = router_over(slow, fast, policy=hedged(delay_ms=50))
    started = time.monotonic()
    ranked = await router.rerank(query(), deadline=deadline())
    assert time.monotonic() - started < 3.0  # not the hour the first attempt would take
    assert ranked.provider == "b" and [s.index for s in ranked.results] == [1, 2, 3, 0]
    assert marks(ranked) == [("a", "CANCELLED", "cancelled"), ("b", "OK", "won")]
    assert len(slow.cancelled) == 1  # the loser's call was cancelled, not left running
    assert router.events.count("hedge", route="r", result="sent") == 1
    assert router.events.count("hedge", route="r", result="won") == 1


async def test_no_hedge_is_sent_before_the_delay() -> None:
    first, second = ScriptedProvider("a", [Wait(0.2)]), ScriptedProvider("b")
    router = router_over(first, second, policy=hedged(delay_ms=3000))
    ranked = await router.rerank(query(), deadline=deadline())
    assert ranked.provider == "a" and second.calls == []
    assert marks(ranked) == [("a", "OK", "")]  # no hedge: nothing to mark
    assert router.events.count("hedge") == 0


async def test_the_hedge_goes_out_after_the_delay_not_at_once() -> None:
    first, second = ScriptedProvider("a", [Wait(0.4)]), ScriptedProvider("b", [HANG])
    router = router_over(first, second, policy=hedged(delay_ms=150))
    ranked = await router.rerank(query(), deadline=deadline())
    assert ranked.provider == "a" and len(second.calls) == 1 and len(second.cancelled) == 1
    assert marks(ranked) == [("a", "OK", "won"), ("b", "CANCELLED", "cancelled")]
    assert router.events.count("hedge", result="won") == 0  # the first attempt won


async def test_a_route_with_one_target_hedges_to_it_again() -> None:
    only = ScriptedProvider("a", [HANG, None])
    ranked = await router_over(only, policy=hedged(delay_ms=30)).rerank(query(), deadline=deadline())
    assert len(only.calls) == 2 and len(only.cancelled) == 1
    assert marks(ranked) == [("a", "CANCELLED", "cancelled"), ("a", "OK", "won")]


async def test_up_to_max_extra_hedges_are_sent() -> None:
    a, b, c = ScriptedProvider("a", [HANG]), ScriptedProvider("b", [HANG]), ScriptedProvider("c")
    router = router_over(a, b, c, policy=hedged(delay_ms=30, max_extra=2, budget_percent=100))
    ranked = await router.rerank(query(), deadline=deadline())
    assert ranked.provider == "c" and len(a.cancelled) == len(b.cancelled) == 1
    assert router.events.count("hedge", result="sent") == 2


async def test_a_failure_fails_over_at_once_without_spending_a_hedge() -> None:
    broken = errors.Unavailable("a: 503", provider="a")
    first, second = ScriptedProvider("a", [broken]), ScriptedProvider("b")
    policy = RoutePolicy(
        retry=RetryConfig(max_attempts=1), strategy=Hedge(HedgeStrategy(kind="hedge", delay_ms=5000))
    )
    router = router_over(first, second, policy=policy)
    started = time.monotonic()
    ranked = await router.rerank(query(), deadline=deadline())
    assert time.monotonic() - started < 3.0 and ranked.provider == "b"
    assert router.events.count("hedge") == 0 and router.events.count("fallback", route="r") == 1


async def test_a_failover_after_a_refused_hedge_marks_no_attempt_won() -> None:
    broken = errors.Unavailable("a: 503", provider="a")
    first = ScriptedProvider("a", [HANG, Wait(0.2, then=broken)])
    second = ScriptedProvider("b")
    policy = RoutePolicy(
        retry=RetryConfig(max_attempts=1),
        strategy=Hedge(HedgeStrategy(kind="hedge", delay_ms=20, budget_percent=1)),
    )
    router = router_over(first, second, policy=policy)
    await router.rerank(query(), deadline=deadline())  # spends the one saved-up hedge
    ranked = await router.rerank(query(), deadline=deadline())
    assert router.events.count("hedge", result="refused") == 1
    assert marks(ranked) == [("a", "UNAVAILABLE", ""), ("b", "OK", "")]  # a fallback, not a hedge


async def test_a_caller_error_is_returned_at_once_and_the_hedge_cancelled() -> None:
    bad = errors.InvalidArgument("b: bad request", provider="b")
    first, second = ScriptedProvider("a", [HANG]), ScriptedProvider("b", [bad])
    router = router_over(first, second, policy=hedged(delay_ms=30))
    with pytest.raises(errors.InvalidArgument):
        await router.rerank(query(), deadline=deadline())
    assert len(first.cancelled) == 1


async def test_the_budget_caps_the_share_of_requests_hedged() -> None:
    first = ScriptedProvider("a", default=Wait(0.08))
    second = ScriptedProvider("b")
    router = router_over(first, second, policy=hedged(delay_ms=10, budget_percent=10))
    for _ in range(30):
        await router.rerank(query(), deadline=deadline())
    sent = router.events.count("hedge", result="sent")
    assert 1 <= sent <= 1 + 30 * 0.10 + 1e-9  # the first saved-up token, then 10% of requests
    assert router.events.count("hedge", result="refused") == 30 - sent
    assert len(second.calls) == sent


def test_the_budget_earns_a_share_of_a_hedge_per_request_and_saves_a_bounded_amount() -> None:
    budget = HedgeBudget(25.0, cap=2.0)
    assert budget.spend() and not budget.spend()  # starts with one
    for _ in range(3):
        budget.earn()
    assert not budget.spend()  # 0.75
    budget.earn()
    assert budget.spend()
    for _ in range(100):
        budget.earn()
    assert budget.spend() and budget.spend() and not budget.spend()  # at most cap saved


def test_the_delay_is_a_latency_quantile_once_enough_answers_are_seen() -> None:
    strategy = Hedge(HedgeStrategy(kind="hedge", delay_ms=200, delay_quantile=0.9))
    target = router_over(ScriptedProvider("a")).resolve("r")[0]
    assert strategy.delay(target) == pytest.approx(0.2)  # nothing seen yet: delay_ms
    window = strategy.latencies.setdefault(target.label, LatencyWindow())
    for n in range(MIN_LATENCIES - 1):
        window.add(0.01 * (n + 1))
    assert strategy.delay(target) == pytest.approx(0.2)  # still too few
    window.add(0.2)  # 20 answers: 10 ms .. 190 ms and 200 ms
    assert strategy.delay(target) == pytest.approx(0.19)  # the 90th percentile of them
