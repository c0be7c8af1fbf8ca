"""Backpressure: per-target and server-wide concurrency limits with a bounded wait, then
RESOURCE_EXHAUSTED with RetryInfo; never an unbounded queue."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from rerankd.resilience.limits import ConcurrencyLimit, Overloaded

from tests.fakes.generic import GenericFake, expected_ranking, provider_config
from tests.resilience.conftest import fakes, gateway, reason_of, request, retry_delay_of

QUERY = "harbour bridge"
TEXTS = ["a bridge over the harbour", "harbour", "a field"]


async def test_a_slot_is_freed_when_its_holder_is_cancelled() -> None:
    limit = ConcurrencyLimit("p/m", 1, scope="target")
    entered = asyncio.Event()

    async def hold() -> None:
        async with limit.slot(0.0):
            entered.set()
            await asyncio.sleep(10)

    holder = asyncio.create_task(hold())
    await entered.wait()
    with pytest.raises(Overloaded) as caught:
        async with limit.slot(0.01):
            pass
    assert caught.value.retry_after is not None and caught.value.retry_after >= 0.1
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    async with limit.slot(0.0):
        assert limit.in_flight == 1
    assert limit.in_flight == 0 and limit.waiting == 0 and limit.rejected == 1


def single(fake: GenericFake, **provider: Any) -> dict[str, Any]:
    return {
        "providers": {"only": provider_config(fake, **provider)},
        "routes": {"r": {"targets": [{"provider": "only", "model": "m"}]}},
    }


async def _burst(stub: Any, count: int) -> list[Any]:
    calls = [stub.Rerank(request("r", QUERY, TEXTS), timeout=5) for _ in range(count)]
    return await asyncio.gather(*calls, return_exceptions=True)


def _split(outcomes: list[Any]) -> tuple[list[Any], list[grpc.aio.AioRpcError]]:
    answers = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(answers) + len(refused) == len(outcomes), outcomes
    return answers, refused


async def test_target_limit_refuses_past_the_bounded_wait_with_retry_info() -> None:
    with fakes({"latency": 0.4}) as (fake,):
        async with gateway(**single(fake, max_concurrency=2), queue_timeout_s=0.05) as (app, stub):
            started = time.perf_counter()
            answers, refused = _split(await _burst(stub, 5))
            elapsed = time.perf_counter() - started
    assert len(answers) == 2 and len(refused) == 3
    assert all([r.index for r in a.results] == expected_ranking(QUERY, TEXTS) for a in answers)
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(error) == "OVERLOADED"
        assert (retry_delay_of(error) or 0.0) >= 0.1
    assert len(fake.requests) == 2  # the refused calls never reached the provider
    assert app.router.events.count("overload", scope="target", target="only/m") == 3
    assert elapsed < 1.0


async def test_a_full_target_overflows_to_the_fallback() -> None:
    with fakes({"latency": 0.3}, {}) as (first, second):
        settings = {
            "providers": {
                "first": provider_config(first, max_concurrency=1),
                "second": provider_config(second),
            },
            "routes": {
                "r": {
                    "targets": [
                        {"provider": "first", "model": "m"},
                        {"provider": "second", "model": "m", "priority": 1},
                    ]
                }
            },
            "queue_timeout_s": 0.02,
        }
        async with gateway(**settings) as (_, stub):
            answers, refused = _split(await _burst(stub, 3))
    assert not refused and sorted(a.provider for a in answers) == ["first", "second", "second"]
    assert len(first.requests) == 1 and len(second.requests) == 2


async def test_server_limit_refuses_past_the_bounded_wait_with_retry_info() -> None:
    with fakes({"latency": 0.4}) as (fake,):
        settings = {**single(fake), "max_concurrent_requests": 2, "queue_timeout_s": 0.05}
        async with gateway(**settings) as (app, stub):
            answers, refused = _split(await _burst(stub, 4))
            assert app.router.server_limit.in_flight == 0
    assert len(answers) == 2 and len(refused) == 2
    assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)
    assert all(reason_of(e) == "OVERLOADED" and retry_delay_of(e) for e in refused)
    assert len(fake.requests) == 2
    assert app.router.events.count("overload", scope="server") == 2


async def test_the_bounded_wait_admits_a_call_when_a_slot_frees_in_time() -> None:
    with fakes({"latency": 0.15}) as (fake,):
        settings = {**single(fake, max_concurrency=1), "queue_timeout_s": 1.0}
        async with gateway(**settings) as (_, stub):
            answers, refused = _split(await _burst(stub, 2))
    assert len(answers) == 2 and not refused
    first, second = sorted(fake.requests, key=lambda r: r.received)
    assert second.received - first.received >= 0.14  # it waited for the slot, then went
