"""Hedged and cascade routes through the live server, over gRPC and HTTP, with HTTP fakes as the
providers: the loser's HTTP request is really closed, the second stage really sees K documents."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from rerankd import metrics
from rerankd.v1 import rerank_pb2 as pb

from tests.fakes.base import Hang
from tests.fakes.generic import GenericFake, expected_ranking, two_targets
from tests.resilience.conftest import fakes, gateway, request

QUERY = "capital city of france"
TEXTS = [
    "Berlin is the capital of Germany.",
    "Paris is the capital city of France.",
    "France grows wine.",
    "The city of Lyon is in France.",
    "capital",
    "a city",
    "france france",
    "nothing here",
]


def route(first: GenericFake, second: GenericFake, strategy: dict[str, Any]) -> dict[str, Any]:
    return two_targets(first, second, retry={"max_attempts": 1}, strategy=strategy)


async def closed(fake: GenericFake, count: int = 1) -> bool:
    """Whether the fake saw `count` requests closed by the client while it hung (bounded wait)."""
    for _ in range(100):
        if fake.closed_early >= count:
            return True
        await asyncio.sleep(0.05)
    return False


HEDGE = {"kind": "hedge", "delay_ms": 100, "budget_percent": 100}


async def test_a_hedged_route_over_grpc_answers_from_the_hedge_and_closes_the_loser() -> None:
    with fakes({}, {}) as (first, second):
        first.inject(Hang(20))
        async with gateway(**route(first, second, HEDGE)) as (app, stub):
            before = metrics.HEDGES.labels("r", "won")._value.get()
            reply = await stub.Rerank(request("r", QUERY, TEXTS), timeout=10)
            assert reply.provider == "second"
            assert [r.index for r in reply.results] == expected_ranking(QUERY, TEXTS)
            assert [(a.provider, a.outcome, a.hedge) for a in reply.attempts] == [
                ("first", "CANCELLED", "cancelled"),
                ("second", "OK", "won"),
            ]
            assert await closed(first)  # the loser's HTTP request was closed, not left hanging
            assert app.router.events.count("hedge", route="r", result="sent") == 1
            assert metrics.HEDGES.labels("r", "won")._value.get() == before + 1


async def test_a_hedged_route_over_http_answers_from_the_hedge() -> None:
    with fakes({}, {}) as (first, second):
        first.inject(Hang(20))
        async with gateway(**route(first, second, HEDGE)) as (app, _):
            async with httpx.AsyncClient(base_url=f"http://{app.http_address}", timeout=10) as http:
                reply = await http.post("/v2/rerank", json={"model": "r", "query": QUERY, "documents": TEXTS})
            assert reply.status_code == 200, reply.text
            assert [r["index"] for r in reply.json()["results"]] == expected_ranking(QUERY, TEXTS)
            assert reply.headers["x-provider"] == "second", (reply.headers, first.requests, second.requests)
            assert reply.headers["x-attempts"] == "2"
            assert await closed(first)


CASCADE = {"kind": "cascade", "keep_top": 3}


async def test_a_cascade_route_over_grpc_bills_the_second_stage_for_keep_top_documents() -> None:
    with fakes({}, {}) as (first, second):
        async with gateway(**route(first, second, CASCADE)) as (_, stub):
            reply = await stub.Rerank(request("r", QUERY, TEXTS, top_n=5), timeout=10)
        assert len(first.requests[0].json()["documents"]) == len(TEXTS)
        assert len(second.requests[0].json()["documents"]) == 3
        # both fakes score alike, so the cascade's order is the single model's order
        assert [r.index for r in reply.results] == expected_ranking(QUERY, TEXTS)[:5]
        assert reply.provider == "second" and reply.usage.search_units == 2
        assert [a.provider for a in reply.attempts] == ["first", "second"]


async def test_a_cascade_route_over_http_falls_back_to_the_first_stage() -> None:
    with fakes({}, {}) as (first, second):
        second.chaos(1.0, [Hang(0.0)])  # every second-stage call fails
        strategy = {**CASCADE, "fallback_to_first_stage": True}
        body = {"model": "r", "query": QUERY, "documents": TEXTS, "top_n": 4}
        async with gateway(**route(first, second, strategy)) as (app, _):
            base_url = f"http://{app.http_address}"
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
                reply = await http.post("/v2/rerank", json=body)
        assert reply.status_code == 200, reply.text
        assert [r["index"] for r in reply.json()["results"]] == expected_ranking(QUERY, TEXTS)[:4]
        assert len(second.requests) == 1


async def test_a_cascade_streams_the_first_stage_as_a_partial_then_the_final_ranking() -> None:
    with fakes({}, {}) as (first, second):
        async with gateway(**route(first, second, CASCADE)) as (_, stub):
            stream = pb.RerankStreamRequest(request=request("r", QUERY, TEXTS, top_n=2), progressive=True)
            messages = [m async for m in stub.RerankStream(stream, timeout=10)]
    results = [m.results for m in messages if m.WhichOneof("event") == "results"]
    assert [r.partial for r in results] == [True, False]
    assert sorted(r.index for r in results[0].results) == list(range(len(TEXTS)))  # every document
    assert [r.index for r in results[1].results] == expected_ranking(QUERY, TEXTS)[:2]
    assert messages[-1].summary.provider == "second"
