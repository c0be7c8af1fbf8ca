"""Circuit breaker: opening on consecutive failures or a failure rate, skipping, half-open probes."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from rerankd.config import BreakerConfig
from rerankd.resilience.breaker import CircuitBreaker, State

from tests.fakes.base import Status
from tests.fakes.generic import GenericFake, expected_ranking, provider_config
from tests.resilience.conftest import fakes, gateway, request

QUERY = "museum tower"
TEXTS = ["a tower", "the museum by the tower", "bread"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(**config: Any) -> tuple[CircuitBreaker, Clock, list[tuple[State, State]]]:
    clock = Clock()
    moves: list[tuple[State, State]] = []
    made = CircuitBreaker(
        "p/m", BreakerConfig(**config), clock=clock, on_transition=lambda _, a, b: moves.append((a, b))
    )
    return made, clock, moves


def test_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    cb, _, moves = breaker(consecutive_failures=3, min_calls=100)
    for outcome in (False, False, True, False, False):
        permit = cb.try_acquire()
        assert permit is not None
        cb.record(permit, outcome)
    assert cb.state is State.CLOSED
    permit = cb.try_acquire()
    assert permit is not None
    cb.record(permit, False)
    assert cb.state is State.OPEN and moves == [(State.CLOSED, State.OPEN)]
    assert cb.try_acquire() is None


def test_opens_on_the_failure_rate_over_the_window() -> None:
    cb, _, _ = breaker(consecutive_failures=100, failure_rate=0.5, window=10, min_calls=10)
    for outcome in [True, False] * 4 + [True]:  # 4 failures in 9 calls: below min_calls
        permit = cb.try_acquire()
        assert permit is not None
        cb.record(permit, outcome)
    assert cb.state is State.CLOSED
    permit = cb.try_acquire()
    assert permit is not None
    cb.record(permit, False)  # 5 of 10 failed
    assert cb.state is State.OPEN


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    cb, clock, moves = breaker(consecutive_failures=1, open_s=5.0)
    permit = cb.try_acquire()
    assert permit is not None
    cb.record(permit, False)
    assert cb.try_acquire() is None and cb.retry_after() == 5.0
    clock.now += 5.0
    probe = cb.try_acquire()
    assert probe is not None and probe.probe and cb.state is State.HALF_OPEN
    assert cb.try_acquire() is None  # one probe at a time
    cb.record(probe, True)
    cb.release(probe)
    assert cb.state is State.CLOSED
    assert moves == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


def test_a_failed_probe_opens_again_and_a_cancelled_probe_frees_its_slot() -> None:
    cb, clock, _ = breaker(consecutive_failures=1, open_s=1.0)
    first = cb.try_acquire()
    assert first is not None
    cb.record(first, False)
    clock.now += 1.0
    probe = cb.try_acquire()
    assert probe is not None
    cb.release(probe)  # cancelled before any outcome: no verdict, another probe may go
    probe = cb.try_acquire()
    assert probe is not None
    cb.record(probe, False)
    assert cb.state is State.OPEN and cb.try_acquire() is None


def test_outcomes_from_before_a_state_change_are_ignored() -> None:
    cb, clock, _ = breaker(consecutive_failures=1, open_s=1.0)
    slow = cb.try_acquire()
    fast = cb.try_acquire()
    assert slow is not None and fast is not None
    cb.record(fast, False)  # opens
    clock.now += 1.0
    assert cb.state is State.HALF_OPEN
    cb.record(slow, True)  # started while closed: must not close a half-open breaker
    assert cb.state is State.HALF_OPEN
    assert not cb.allows(slow)


def test_a_disabled_breaker_never_opens() -> None:
    cb, _, moves = breaker(enabled=False, consecutive_failures=1)
    for _ in range(5):
        permit = cb.try_acquire()
        assert permit is not None
        cb.record(permit, False)
    assert cb.state is State.CLOSED and moves == []


def route(first: GenericFake, second: GenericFake, open_s: float) -> dict[str, Any]:
    sick = {"consecutive_failures": 2, "open_s": open_s}
    return {
        "providers": {
            "first": provider_config(first, breaker=sick),
            "second": provider_config(second),
        },
        "routes": {
            "r": {
                "targets": [
                    {"provider": "first", "model": "m"},
                    {"provider": "second", "model": "m", "priority": 1},
                ],
                "retry": {"max_attempts": 1},
            }
        },
    }


async def test_breaker_opens_skips_the_target_and_a_half_open_probe_closes_it() -> None:
    with fakes({}, {}) as (first, second):
        first.inject(Status(503, {"message": "down"}), Status(500, {"message": "down"}))
        async with gateway(**route(first, second, open_s=0.3)) as (app, stub):
            for _ in range(2):  # two failures in a row open first/m; second answers both
                reply = await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
                assert reply.provider == "second"
            assert app.router.breaker_states()["first/m"] is State.OPEN

            skipped = await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
            assert skipped.provider == "second" and len(first.requests) == 2  # no call to first
            assert skipped.attempts[0].provider == "first" and skipped.attempts[0].outcome == "UNAVAILABLE"
            assert "circuit open" in skipped.attempts[0].message and skipped.attempts[0].duration_ms < 5

            await asyncio.sleep(0.35)
            probed = await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)  # the probe succeeds
            assert probed.provider == "first" and len(first.requests) == 3
            assert [r.index for r in probed.results] == expected_ranking(QUERY, TEXTS)
            assert app.router.breaker_states()["first/m"] is State.CLOSED
            again = await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
            assert again.provider == "first"
            events = app.router.events
    assert [
        events.count("breaker", target="first/m", from_state=a, to_state=b)
        for a, b in [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    ] == [1, 1, 1]
    assert len(second.requests) == 3


async def test_a_failing_probe_opens_the_breaker_again() -> None:
    with fakes({}, {}) as (first, second):
        first.inject(*[Status(503, {"message": "down"})] * 3)
        async with gateway(**route(first, second, open_s=0.2)) as (app, stub):
            for _ in range(2):
                await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
            await asyncio.sleep(0.25)
            probed = await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
            assert [(a.provider, a.outcome) for a in probed.attempts] == [
                ("first", "UNAVAILABLE"),
                ("second", "OK"),
            ]
            assert app.router.breaker_states()["first/m"] is State.OPEN
            skipped = await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
            assert "circuit open" in skipped.attempts[0].message
    assert len(first.requests) == 3
    assert app.router.events.count("breaker", target="first/m", from_state="half_open", to_state="open") == 1


async def test_caller_errors_do_not_open_the_breaker() -> None:
    with fakes({}, {}) as (first, second):
        first.inject(*[Status(400, {"message": "bad"})] * 4)
        async with gateway(**route(first, second, open_s=10)) as (app, stub):
            for _ in range(4):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert app.router.breaker_states()["first/m"] is State.CLOSED
            reply = await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
    assert reply.provider == "first" and len(first.requests) == 5 and not second.requests
