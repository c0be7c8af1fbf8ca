"""Per-caller token buckets: the arithmetic, and a limited caller slowed while another is not."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from rerankd import errors, metrics
from rerankd.config import Settings
from rerankd.ratelimit import RateLimiter, TokenBucket
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.test_auth import ALICE, BOB, bearer, rerank_request, secured_app


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_gives_its_burst_then_one_token_per_interval() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, tokens=3.0, updated=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.25) == pytest.approx(0.25)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(10.0) == 0.0 and bucket.tokens == pytest.approx(2.0)  # refill stops at burst


def test_reservations_queue_behind_each_other() -> None:
    bucket = TokenBucket(rate=4.0, burst=1.0, tokens=1.0, updated=0.0)
    assert [bucket.reserve(0.0) for _ in range(4)] == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_limiter_keeps_one_bucket_per_caller_and_honours_overrides() -> None:
    clock = Clock()
    limiter = RateLimiter(default_rps=1.0, burst=2, per_caller={"batch": 10.0, "free": 0.0}, clock=clock)
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(errors.ResourceExhausted) as caught:
        limiter.check("a")
    assert caught.value.retry_after == pytest.approx(1.0) and caught.value.reason == "RATE_LIMITED"
    limiter.check("b")  # another caller has its own bucket
    for _ in range(10):
        limiter.check("batch")  # burst 2 applies, but at 10/s: the clock moves 0.1 s per call
        clock.now += 0.1
    for _ in range(1000):
        limiter.check("free")  # 0 = no limit
    clock.now += 1.0
    limiter.check("a")


def test_limiter_from_settings() -> None:
    assert RateLimiter.from_settings(Settings()) is None
    limiter = RateLimiter.from_settings(Settings(rate_limit_rps=5, rate_limit_callers={"x": 1}))
    assert limiter is not None and limiter.rate_of("x") == 1 and limiter.rate_of("y") == 5
    assert RateLimiter.from_settings(Settings(rate_limit_callers={"x": 1})) is not None


async def test_a_rate_limited_caller_is_slowed_while_another_is_not(tmp_path: Path) -> None:
    limited = metrics.RATE_LIMITED.labels(caller="alice")
    before = limited._value.get()
    async with (
        secured_app(tmp_path, rate_limit_rps=1.0, rate_limit_burst=2, rate_limit_callers={"bob": 1000.0}) as (
            app,
            _,
        ),
        grpc.aio.insecure_channel(app.addresses[0]) as channel,
    ):
        stub = pb_grpc.RerankServiceStub(channel)
        outcomes: dict[str, list[grpc.StatusCode]] = {"alice": [], "bob": []}
        delays: list[float] = []
        for _ in range(6):
            for name, token in (("alice", ALICE), ("bob", BOB)):
                try:
                    await stub.Rerank(rerank_request(), metadata=bearer(token), timeout=10)
                    outcomes[name].append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    outcomes[name].append(exc.code())
                    delays.append(_retry_delay(exc))
        assert outcomes["bob"] == [grpc.StatusCode.OK] * 6
        assert outcomes["alice"][:2] == [grpc.StatusCode.OK] * 2
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in outcomes["alice"][2:]
        assert set(outcomes["alice"]) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert delays and all(0.0 < d <= 1.0 for d in delays)
        await asyncio.sleep(min(delays[-1] + 0.05, 1.1))  # back off as told, then alice is served again
        await stub.Rerank(rerank_request(), metadata=bearer(ALICE), timeout=10)
    assert limited._value.get() == before + outcomes["alice"].count(grpc.StatusCode.RESOURCE_EXHAUSTED)


async def test_a_batch_stream_is_paced_not_refused(tmp_path: Path) -> None:
    async with (
        secured_app(tmp_path, rate_limit_callers={"alice": 5.0}, rate_limit_burst=1) as (app, _),
        grpc.aio.insecure_channel(app.addresses[0]) as channel,
    ):
        batch = pb_grpc.RerankServiceStub(channel).RerankBatch(metadata=bearer(ALICE), timeout=20)
        started = time.monotonic()
        for index in range(5):
            request = rerank_request()
            request.request_id = f"r{index}"
            await batch.write(pb.RerankBatchRequest(request=request))
        await batch.done_writing()
        answers = [message async for message in batch]
        elapsed = time.monotonic() - started
    assert sorted(a.request_id for a in answers) == [f"r{i}" for i in range(5)]
    assert all(a.HasField("response") for a in answers)
    assert elapsed >= 0.7  # 1 token at once, then 4 more at 5/s


async def test_http_callers_share_the_limits(tmp_path: Path) -> None:
    body = {"model": "co/rerank-v3.5", "query": "apple", "documents": ["an apple", "x"]}
    async with (
        secured_app(tmp_path, http_enabled=True, rate_limit_rps=0.5, rate_limit_burst=1) as (app, _),
        httpx.AsyncClient() as client,
    ):
        url = f"http://{app.http_address}/v2/rerank"
        headers = {"authorization": f"Bearer {ALICE}"}
        first = await client.post(url, json=body, headers=headers)
        second = await client.post(url, json=body, headers=headers)
        other = await client.post(url, json=body, headers={"authorization": f"Bearer {BOB}"})
    assert first.status_code == 200 and other.status_code == 200
    assert second.status_code == 429, second.text


def _retry_delay(error: grpc.aio.AioRpcError) -> float:
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    retry = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry) for detail in status_pb2.Status.FromString(raw).details)
    return retry.retry_delay.ToTimedelta().total_seconds()
