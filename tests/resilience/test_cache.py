"""The optional per-route response cache: keys, TTL, bounds, and hits over the live server."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from rerankd.cache import ResponseCache
from rerankd.config import CacheConfig
from rerankd.domain import Document, Ranked, RerankQuery, Scored, Truncation, Usage

from tests.fakes.base import Status
from tests.fakes.generic import expected_ranking, provider_config
from tests.resilience.conftest import fakes, gateway, request

QUERY = "school library"
TEXTS = ["the school library", "a library", "a park"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


BASE = RerankQuery(model="r", query="q", documents=[Document("a"), Document("b", id="2", fields={"t": "x"})])


@pytest.mark.parametrize(
    "changed",
    [
        replace(BASE, query="q2"),
        replace(BASE, documents=[Document("a"), Document("b", id="2", fields={"t": "y"})]),
        replace(BASE, documents=[Document("a"), Document("b", id="3", fields={"t": "x"})]),
        replace(BASE, documents=[Document("b", id="2", fields={"t": "x"}), Document("a")]),
        replace(BASE, documents=[Document("a")]),
        replace(BASE, top_n=1),
        replace(BASE, rank_fields=("t",)),
        replace(BASE, truncation=Truncation.NONE),
        replace(BASE, max_tokens_per_doc=10),
        replace(BASE, parameters={"x": 1}),
    ],
)
def test_every_parameter_that_changes_the_answer_changes_the_key(changed: RerankQuery) -> None:
    assert ResponseCache.key("r", changed) != ResponseCache.key("r", BASE)


def test_what_does_not_change_the_ranking_does_not_change_the_key() -> None:
    same = replace(BASE, return_documents=True, metadata={"team": "x"}, request_id="other")
    assert ResponseCache.key("r", same) == ResponseCache.key("r", BASE)
    assert ResponseCache.key("other-route", BASE) != ResponseCache.key("r", BASE)
    assert ResponseCache.key("r", replace(BASE, parameters={"a": 1, "b": 2})) == ResponseCache.key(
        "r", replace(BASE, parameters={"b": 2, "a": 1})
    )


def ranked(n: int) -> Ranked:
    return Ranked([Scored(i, 1.0 / (i + 1)) for i in range(n)], Usage(search_units=1), "p", "m")


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = ResponseCache(CacheConfig(enabled=True, ttl_s=10), clock=clock)
    cache.put("k", ranked(3))
    clock.now = 9.9
    hit = cache.get("k")
    assert hit is not None and hit.cache == "hit" and [s.index for s in hit.results] == [0, 1, 2]
    assert hit.usage == Usage() and hit.attempts == []  # a hit costs nothing
    clock.now = 10.0
    assert cache.get("k") is None and len(cache) == 0 and cache.bytes == 0


def test_bounded_by_entries_and_by_bytes_least_recently_used_first() -> None:
    cache = ResponseCache(CacheConfig(enabled=True, max_entries=2))
    cache.put("a", ranked(1))
    cache.put("b", ranked(1))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", ranked(1))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    small = ResponseCache(CacheConfig(enabled=True, max_bytes=4096))
    small.put("x", ranked(40))
    small.put("y", ranked(40))
    assert len(small) == 1 and small.get("y") is not None and small.bytes <= 4096
    small.put("huge", ranked(1000))  # larger than the whole cache: not kept, nothing evicted
    assert small.get("huge") is None and small.get("y") is not None


def cached_route(fake: Any, cache: dict[str, Any]) -> dict[str, Any]:
    return {
        "providers": {"only": provider_config(fake)},
        "routes": {
            "cached": {"targets": [{"provider": "only", "model": "m"}], "cache": cache},
            "plain": {"targets": [{"provider": "only", "model": "m"}]},
        },
    }


async def _rerank(stub: Any, model: str, top_n: int = 0) -> tuple[Any, dict[str, str]]:
    call = stub.Rerank(request(model, QUERY, TEXTS, top_n=top_n), timeout=5)
    reply = await call
    trailing = {k: v for k, v in (await call.trailing_metadata() or ()) if isinstance(v, str)}
    return reply, trailing


async def test_a_cache_hit_says_so_in_metadata_and_costs_no_provider_call() -> None:
    with fakes({}) as (fake,):
        async with gateway(**cached_route(fake, {"enabled": True, "ttl_s": 60})) as (app, stub):
            first, first_meta = await _rerank(stub, "cached")
            second, second_meta = await _rerank(stub, "cached")
            calls_after_hit = len(fake.requests)
            other_top_n, other_meta = await _rerank(stub, "cached", top_n=1)
            _, plain_meta = await _rerank(stub, "plain")
    assert first_meta["x-cache"] == "miss" and len(first.attempts) == 1
    assert second_meta["x-cache"] == "hit" and calls_after_hit == 1
    assert second_meta["x-attempts"] == "0" and not second.attempts
    assert [(r.index, r.relevance_score) for r in second.results] == [
        (r.index, r.relevance_score) for r in first.results
    ]
    assert [r.index for r in second.results] == expected_ranking(QUERY, TEXTS)
    assert second.provider == "only" and second.model == "m" and second.usage.search_units == 0
    assert other_meta["x-cache"] == "miss" and len(other_top_n.results) == 1  # top_n is in the key
    assert "x-cache" not in plain_meta and len(fake.requests) == 3  # off unless the route enables it
    assert app.router.events.count("cache", route="cached", result="hit") == 1
    assert app.router.events.count("cache", route="cached", result="miss") == 2


async def test_failures_are_not_cached() -> None:
    with fakes({}) as (fake,):
        fake.inject(Status(400, {"message": "nope"}))
        async with gateway(**cached_route(fake, {"enabled": True})) as (_, stub):
            with pytest.raises(Exception, match="nope"):
                await _rerank(stub, "cached")
            reply, meta = await _rerank(stub, "cached")
    assert meta["x-cache"] == "miss" and reply.results and len(fake.requests) == 2
