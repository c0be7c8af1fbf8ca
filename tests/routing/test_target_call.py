"""One target's calls: retry back-off, Retry-After, the attempt cap, and the attempt records."""

from __future__ import annotations

import re
import time

import pytest
from rerankd import errors
from rerankd.config import RetryConfig
from rerankd.routing.policy import RoutePolicy

from tests.routing.conftest import deadline, outcomes, query, router_over
from tests.routing.scripted import ScriptedProvider


async def test_retries_stop_at_max_attempts_with_the_wait_in_each_message() -> None:
    policy = RoutePolicy(retry=RetryConfig(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.01))
    first = ScriptedProvider("a", default=errors.Unavailable("a: 503", provider="a"))
    with pytest.raises(errors.Unavailable):
        await router_over(first, policy=policy).rerank(query(), deadline=deadline())
    assert len(first.calls) == 3


async def test_retry_after_sets_the_least_wait_before_the_retry() -> None:
    policy = RoutePolicy(retry=RetryConfig(max_attempts=2, initial_backoff_s=0.0, max_retry_after_s=1.0))
    limited = errors.ResourceExhausted("a: 429", retry_after=0.2, provider="a")
    first = ScriptedProvider("a", [limited])
    router = router_over(first, policy=policy)
    started = time.monotonic()
    ranked = await router.rerank(query(), deadline=deadline())
    assert time.monotonic() - started >= 0.2
    assert outcomes(ranked) == [("a", "RESOURCE_EXHAUSTED", 1), ("a", "OK", 2)]
    assert ranked.attempts[0].message.endswith("(retry in 200 ms)")


async def test_a_retry_after_past_the_limit_fails_over_instead_of_waiting() -> None:
    policy = RoutePolicy(retry=RetryConfig(max_attempts=3, max_retry_after_s=0.5))
    limited = errors.ResourceExhausted("a: 429", retry_after=30.0, provider="a")
    first, second = ScriptedProvider("a", [limited]), ScriptedProvider("b")
    started = time.monotonic()
    ranked = await router_over(first, second, policy=policy).rerank(query(), deadline=deadline())
    assert time.monotonic() - started < 5.0 and ranked.provider == "b" and len(first.calls) == 1


async def test_back_off_waits_are_full_jitter_under_growing_caps() -> None:
    retry = RetryConfig(max_attempts=4, initial_backoff_s=0.04, multiplier=2.0, max_backoff_s=0.06)
    first = ScriptedProvider("a", default=errors.Unavailable("a: 503", provider="a"))
    second = ScriptedProvider("b")
    ranked = await router_over(first, second, policy=RoutePolicy(retry=retry)).rerank(
        query(), deadline=deadline()
    )
    assert outcomes(ranked)[-1] == ("b", "OK", 1) and len(first.calls) == 4
    waits = [float(re.search(r"retry in (\d+) ms", a.message).group(1)) for a in ranked.attempts[:3]]  # type: ignore[union-attr]
    caps = [40, 60, 60]  # initial, then doubled up to max_backoff_s
    assert all(0 <= wait <= cap for wait, cap in zip(waits, caps, strict=True))
    assert "retry in" not in ranked.attempts[3].message  # the last try at a is not retried


async def test_a_retry_that_would_pass_the_deadline_is_not_made() -> None:
    policy = RoutePolicy(retry=RetryConfig(max_attempts=3, initial_backoff_s=0.0))
    limited = errors.ResourceExhausted("a: 429", retry_after=1.0, provider="a")
    first = ScriptedProvider("a", [limited])
    with pytest.raises(errors.ResourceExhausted):
        await router_over(first, policy=policy).rerank(query(), deadline=deadline(0.5))
    assert len(first.calls) == 1
