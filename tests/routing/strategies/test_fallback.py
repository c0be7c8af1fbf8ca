"""The fallback strategy over in-memory providers: what fails over, what is returned at once."""

from __future__ import annotations

import pytest
from rerankd import errors
from rerankd.config import BreakerConfig, RetryConfig
from rerankd.routing.policy import RoutePolicy

from tests.routing.conftest import deadline, outcomes, query, router_over
from tests.routing.scripted import ScriptedProvider, Wait

RETRIED = [
    errors.Unavailable("a: 503", provider="a"),
    errors.ResourceExhausted("a: 429", provider="a"),
    errors.DeadlineExceeded("a: 504", provider="a"),
    errors.BadResponse("a: garbled", provider="a"),
]
FAILED_OVER = [
    errors.ProviderMisconfigured("a: bad key", provider="a"),
    errors.UnsupportedByProvider("truncation: not supported by a", provider="a"),
    errors.CircuitOpen("a: open", provider="a"),
    errors.Overloaded("a: full", provider="a"),
    errors.QueueFull("a: queue full", provider="a"),
]
FATAL = [
    errors.InvalidArgument("a: bad request", provider="a"),
    errors.NotFound("a: no such model", provider="a"),
    errors.Internal("a: our bug", provider="a"),
    errors.PermissionDenied("a: no", provider="a"),
]


@pytest.mark.parametrize("error", RETRIED, ids=lambda e: type(e).__name__)
async def test_a_retryable_error_is_retried_then_fails_over(error: errors.RerankError) -> None:
    first, second = ScriptedProvider("a", [error, error]), ScriptedProvider("b")
    router = router_over(first, second)
    ranked = await router.rerank(query(), deadline=deadline())
    assert ranked.provider == "b" and [s.index for s in ranked.results] == [1, 2, 3, 0]
    code = error.code.name
    assert outcomes(ranked) == [("a", code, 1), ("a", code, 2), ("b", "OK", 1)]
    assert router.events.count("retry", target="a/m") == 1
    assert router.events.count("fallback", route="r", from_target="a/m", to_target="b/m") == 1


@pytest.mark.parametrize("error", FAILED_OVER, ids=lambda e: type(e).__name__)
async def test_a_failover_error_goes_to_the_next_target_at_once(error: errors.RerankError) -> None:
    first, second = ScriptedProvider("a", [error]), ScriptedProvider("b")
    ranked = await router_over(first, second).rerank(query(), deadline=deadline())
    assert ranked.provider == "b" and len(first.calls) == 1
    assert outcomes(ranked) == [("a", error.code.name, 1), ("b", "OK", 1)]


@pytest.mark.parametrize("error", FATAL, ids=lambda e: type(e).__name__)
async def test_a_caller_error_is_returned_at_once(error: errors.RerankError) -> None:
    first, second = ScriptedProvider("a", [error]), ScriptedProvider("b")
    with pytest.raises(type(error)) as caught:
        await router_over(first, second).rerank(query(), deadline=deadline())
    assert caught.value is error and len(first.calls) == 1 and second.calls == []


async def test_an_attempt_timeout_is_retried_and_fails_over() -> None:
    policy = RoutePolicy(retry=RetryConfig(max_attempts=2, initial_backoff_s=0.001, attempt_timeout_s=0.05))
    first, second = ScriptedProvider("a", [Wait(5), Wait(5)]), ScriptedProvider("b")
    ranked = await router_over(first, second, policy=policy).rerank(query(), deadline=deadline())
    assert outcomes(ranked) == [("a", "DEADLINE_EXCEEDED", 1), ("a", "DEADLINE_EXCEEDED", 2), ("b", "OK", 1)]
    assert len(first.cancelled) == 2  # each timed-out call was cancelled, not left running


async def test_when_every_target_fails_the_last_retryable_error_is_reported() -> None:
    misconfigured = errors.ProviderMisconfigured("b: bad key", provider="b")
    first = ScriptedProvider("a", default=errors.Unavailable("a: 503", provider="a"))
    second = ScriptedProvider("b", [misconfigured])
    with pytest.raises(errors.Unavailable) as caught:
        await router_over(first, second).rerank(query(), deadline=deadline())
    assert caught.value.provider == "a"


async def test_an_open_breaker_skips_its_target_without_a_call() -> None:
    breaker = BreakerConfig(consecutive_failures=1, open_s=60)
    first = ScriptedProvider("a", [errors.Unavailable("a: 503", provider="a")])
    second = ScriptedProvider("b")
    policy = RoutePolicy(retry=RetryConfig(max_attempts=1))
    router = router_over(first, second, policy=policy, breaker=breaker)
    await router.rerank(query(), deadline=deadline())  # opens a's breaker
    assert router.breaker_states()["a/m"].value == "open"
    ranked = await router.rerank(query(), deadline=deadline())
    assert len(first.calls) == 1 and ranked.provider == "b"
    assert outcomes(ranked) == [("a", "UNAVAILABLE", 1), ("b", "OK", 1)]
    assert "circuit open" in ranked.attempts[0].message and ranked.attempts[0].duration_ms == 0.0


async def test_no_target_is_started_past_the_deadline() -> None:
    first = ScriptedProvider("a")
    with pytest.raises(errors.DeadlineExceeded):
        await router_over(first).rerank(query(), deadline=deadline(0.0))
    assert first.calls == []


async def test_top_n_is_applied_to_the_final_order() -> None:
    first = ScriptedProvider("a")
    ranked = await router_over(first).rerank(query(top_n=2), deadline=deadline())
    assert [(s.index, s.score) for s in ranked.results] == [(1, 0.9), (2, 0.5)]
    assert first.calls[0].top_n == 2
