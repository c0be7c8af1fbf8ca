"""Retries: which failures are retried, the back-off between tries, Retry-After, the deadline."""

from __future__ import annotations

import asyncio
import random
import re
import time
from typing import Any

import grpc
import pytest
from rerankd import errors
from rerankd.config import RetryConfig
from rerankd.errors import BadResponse, CircuitOpen, Overloaded, QueueFull, UnsupportedByProvider
from rerankd.resilience.retry import Disposition, backoff, backoff_cap, classify, retry_delay

from tests.fakes.base import Status
from tests.fakes.generic import GenericFake, expected_ranking, provider_config
from tests.resilience.conftest import fakes, gateway, reason_of, request, retry_delay_of

QUERY = "river wine"
TEXTS = ["wine from the river valley", "a river", "bread", "wine"]


def test_backoff_caps_grow_exponentially_up_to_the_maximum() -> None:
    policy = RetryConfig(initial_backoff_s=0.1, multiplier=2.0, max_backoff_s=0.5)
    assert [backoff_cap(policy, n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_backoff_is_full_jitter_within_the_cap() -> None:
    policy = RetryConfig(initial_backoff_s=0.1, multiplier=2.0, max_backoff_s=1.0)
    rng = random.Random(42)
    for retry in (1, 2, 3):
        waits = [backoff(policy, retry, rng) for _ in range(2000)]
        cap = backoff_cap(policy, retry)
        assert 0.0 <= min(waits) < 0.05 * cap and 0.95 * cap < max(waits) <= cap
        assert sum(waits) / len(waits) == pytest.approx(cap / 2, rel=0.1)  # uniform on [0, cap]


def test_retry_delay_honours_retry_after_the_attempt_cap_and_the_deadline() -> None:
    policy = RetryConfig(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.01, max_retry_after_s=2.0)
    rng = random.Random(0)
    limited = errors.ResourceExhausted("429", retry_after=0.5)
    assert retry_delay(policy, 1, limited, rng, remaining=10.0) == pytest.approx(0.5)
    assert retry_delay(policy, 3, limited, rng, remaining=10.0) is None  # attempts used up
    assert retry_delay(policy, 1, limited, rng, remaining=0.4) is None  # would pass the deadline
    too_long = errors.ResourceExhausted("429", retry_after=5.0)
    assert retry_delay(policy, 1, too_long, rng, remaining=60.0) is None  # beyond max_retry_after_s
    plain = errors.Unavailable("503")
    assert 0.0 <= (retry_delay(policy, 1, plain, rng, remaining=1.0) or 0.0) <= 0.01
    assert retry_delay(policy, 1, errors.InvalidArgument("bad"), rng, remaining=10.0) is None


@pytest.mark.parametrize(
    ("error", "disposition"),
    [
        (errors.Unavailable("503"), Disposition.RETRY),
        (errors.ResourceExhausted("429"), Disposition.RETRY),
        (errors.DeadlineExceeded("attempt timeout"), Disposition.RETRY),
        (BadResponse("garbled", provider="p"), Disposition.RETRY),
        (errors.ProviderMisconfigured("bad key"), Disposition.FAILOVER),
        (UnsupportedByProvider("no NONE"), Disposition.FAILOVER),
        # the class decides, not the reason string callers are told
        (errors.InvalidArgument("no NONE", reason="UNSUPPORTED_BY_PROVIDER"), Disposition.FATAL),
        (CircuitOpen("open"), Disposition.FAILOVER),
        (Overloaded("full"), Disposition.FAILOVER),
        (QueueFull("queue full"), Disposition.FAILOVER),
        (errors.InvalidArgument("bad request"), Disposition.FATAL),
        (errors.NotFound("no such model"), Disposition.FATAL),
        (errors.Internal("our bug"), Disposition.FATAL),
    ],
)
def test_classification(error: errors.RerankError, disposition: Disposition) -> None:
    assert classify(error) is disposition


def test_a_garbled_provider_answer_is_reported_as_unavailable() -> None:
    reported = BadResponse("p: could not parse the provider's answer", provider="p")
    assert isinstance(reported, BadResponse) and reported.code == grpc.StatusCode.UNAVAILABLE
    assert reported.retryable and reported.reason == "PROVIDER_BAD_RESPONSE"


def one_target(fake: GenericFake, retry: dict[str, Any]) -> dict[str, Any]:
    return {
        "providers": {"only": provider_config(fake)},
        "routes": {"r": {"targets": [{"provider": "only", "model": "m"}], "retry": retry}},
    }


async def test_retries_are_bounded_by_max_attempts() -> None:
    retry = {"max_attempts": 4, "initial_backoff_s": 0.01, "max_backoff_s": 0.02}
    with fakes({}) as (fake,):
        fake.inject(*[Status(503, {"message": "down"})] * 10)
        async with gateway(**one_target(fake, retry)) as (app, stub):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
            await asyncio.sleep(0.1)  # a fifth try would show up here
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert reason_of(caught.value) == "UNAVAILABLE" and "down" in (caught.value.details() or "")
    assert len(fake.requests) == 4
    assert app.router.events.count("retry", target="only/m", code="UNAVAILABLE") == 3


_WAIT = re.compile(r"\(retry in (\d+) ms\)$")


async def test_retries_are_spaced_by_jittered_exponential_backoff() -> None:
    retry = {"max_attempts": 4, "initial_backoff_s": 0.05, "multiplier": 2.0, "max_backoff_s": 0.15}
    with fakes({}) as (fake,):
        fake.inject(*[Status(503, {"message": "down"})] * 3)  # the fourth try answers
        async with gateway(**one_target(fake, retry)) as (_, stub):
            reply = await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
    assert [r.index for r in reply.results] == expected_ranking(QUERY, TEXTS)
    assert [(a.outcome, a.attempt) for a in reply.attempts] == [
        ("UNAVAILABLE", 1),
        ("UNAVAILABLE", 2),
        ("UNAVAILABLE", 3),
        ("OK", 4),
    ]
    # Each failed attempt says how long the router waited; the fake measures when tries arrived.
    waits = [int(_WAIT.search(a.message).group(1)) / 1000 for a in reply.attempts[:3]]  # type: ignore[union-attr]
    gaps = [b.received - a.received for a, b in zip(fake.requests, fake.requests[1:], strict=False)]
    for wait, gap, cap in zip(waits, gaps, [0.05, 0.10, 0.15], strict=True):
        assert 0.0 <= wait <= cap + 0.001, (waits, gaps)  # full jitter: uniform in [0, cap]
        assert wait - 0.002 <= gap <= wait + 0.04, (waits, gaps)  # the wait, plus one 503 round trip


async def test_retry_after_spaces_the_retries_and_the_third_try_answers() -> None:
    limited = Status(429, {"message": "slow down"}, {"Retry-After": "0.15"})
    with fakes({}) as (fake,):
        fake.inject(limited, limited)
        retry = {"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.01}
        async with gateway(**one_target(fake, retry)) as (_, stub):
            reply = await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
    assert [r.index for r in reply.results] == expected_ranking(QUERY, TEXTS)
    assert [(a.outcome, a.attempt) for a in reply.attempts] == [
        ("RESOURCE_EXHAUSTED", 1),
        ("RESOURCE_EXHAUSTED", 2),
        ("OK", 3),
    ]
    gaps = [b.received - a.received for a, b in zip(fake.requests, fake.requests[1:], strict=False)]
    assert len(gaps) == 2 and all(0.15 <= gap < 0.3 for gap in gaps), gaps


async def test_a_retry_after_beyond_the_deadline_is_not_waited_for_and_is_passed_on() -> None:
    with fakes({}) as (fake,):
        fake.inject(Status(429, {"message": "quota"}, {"Retry-After": "3"}))
        retry = {"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.01}
        async with gateway(**one_target(fake, retry)) as (_, stub):
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Rerank(request("r", QUERY, TEXTS), timeout=1.0)
            elapsed = time.perf_counter() - started
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_delay_of(caught.value) == pytest.approx(3.0)  # the provider's Retry-After, as RetryInfo
    assert len(fake.requests) == 1 and elapsed < 0.3


async def test_retries_stop_at_the_deadline() -> None:
    retry = {"max_attempts": 10, "initial_backoff_s": 0.1, "multiplier": 1.0, "max_backoff_s": 0.1}
    with fakes({}) as (fake,):
        fake.inject(*[Status(503, {"message": "down"}, {"Retry-After": "0.1"})] * 20)
        async with gateway(**one_target(fake, retry), default_deadline_s=0.3) as (_, stub):
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Rerank(request("r", QUERY, TEXTS))
            elapsed = time.perf_counter() - started
    # Three tries fit in 0.3 s with 0.1 s between them; a fourth would not, so none is started.
    assert len(fake.requests) == 3
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert reason_of(caught.value) == "UNAVAILABLE"
    assert elapsed < 0.3


def test_back_pressure_does_not_trip_the_breaker() -> None:
    from rerankd.resilience.retry import breaker_verdict

    assert breaker_verdict(errors.ResourceExhausted("slow down", retry_after=1.0)) is None
    assert breaker_verdict(errors.Unavailable("down")) is False
    assert breaker_verdict(errors.InvalidArgument("bad")) is None
