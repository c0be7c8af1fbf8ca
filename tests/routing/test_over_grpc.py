"""Routing over the live gRPC server: fallbacks, caller errors, deadlines, cancellation, chunking.

Every test starts the real server with generic fakes as providers (tests/fakes/generic.py) and
injects faults into the fakes; assertions are on what the caller got and what the fakes saw.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rerankd.domain import Scored
from rerankd.routing import Router, Target
from rerankd.routing.ranking import rank as _rank
from rerankd.v1 import rerank_pb2 as pb

from tests.fakes.base import Delay, Hang, Malformed, Reset, Status
from tests.fakes.generic import FAST_RETRY, expected_ranking, provider_config, two_targets
from tests.resilience.conftest import fakes, gateway, reason_of, request

QUERY = "capital city of france"
TEXTS = [
    "Berlin is the capital of Germany.",
    "Paris is the capital city of France.",
    "France grows wine.",
    "The city of Lyon is in France.",
]


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Status(503, {"message": "down"}), "UNAVAILABLE"),
        (Status(429, {"message": "slow down"}, {"Retry-After": "0.01"}), "RESOURCE_EXHAUSTED"),
        (Reset(), "UNAVAILABLE"),
        (Malformed(), "UNAVAILABLE"),
        (Status(401, {"message": "bad key"}), "FAILED_PRECONDITION"),
    ],
    ids=["503", "429", "reset", "malformed", "401"],
)
async def test_fallback_to_second_target_when_first_fails(fault: Any, outcome: str) -> None:
    with fakes({}, {}) as (first, second):
        first.inject(fault, fault)
        async with gateway(**two_targets(first, second)) as (app, stub):
            reply = await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
    assert reply.provider == "second" and reply.model == "m2"
    assert [r.index for r in reply.results] == expected_ranking(QUERY, TEXTS)
    tried = [(a.provider, a.outcome, a.attempt) for a in reply.attempts]
    # A provider that refused our credentials is not retried (a retry cannot fix it).
    first_tries = 1 if outcome == "FAILED_PRECONDITION" else 2
    assert tried == [("first", outcome, n) for n in range(1, first_tries + 1)] + [("second", "OK", 1)]
    assert len(first.requests) == first_tries and len(second.requests) == 1
    assert app.router.events.count("fallback", route="r", from_target="first/m1", to_target="second/m2") == 1
    assert app.router.events.count("retry", target="first/m1") == first_tries - 1


@pytest.mark.parametrize(
    ("top_n", "indices"),
    [(0, [0, 1, 2]), (3, [0, 1]), (0, [0, 1, 2, 2]), (0, [0, 1, 2, 3, 4])],
    ids=["one-missing", "short-of-top_n", "one-twice", "one-extra"],
)
async def test_an_answer_that_misses_or_adds_documents_is_a_bad_response_and_fails_over(
    top_n: int, indices: list[int]
) -> None:
    short = Status(200, {"results": [{"index": i, "relevance_score": 0.5} for i in indices]})
    with fakes({}, {}) as (first, second):
        settings = two_targets(first, second)
        settings["routes"]["only"] = {"targets": [{"provider": "first", "model": "m1"}], "retry": FAST_RETRY}
        first.inject(short, short, short, short)  # two attempts on route r, then two on route only
        async with gateway(**settings) as (_, stub):
            reply = await stub.Rerank(request("r", QUERY, TEXTS, top_n=top_n), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Rerank(request("only", QUERY, TEXTS, top_n=top_n), timeout=5)
    assert reply.provider == "second"
    assert [r.index for r in reply.results] == expected_ranking(QUERY, TEXTS, top_n or None)
    assert [(a.provider, a.outcome) for a in reply.attempts] == [
        ("first", "UNAVAILABLE"),
        ("first", "UNAVAILABLE"),
        ("second", "OK"),
    ]
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert reason_of(caught.value) == "PROVIDER_BAD_RESPONSE"


async def test_non_retryable_400_is_returned_at_once_without_retry_or_fallback() -> None:
    with fakes({}, {}) as (first, second):
        first.inject(Status(400, {"message": "documents[2] is not acceptable"}))
        async with gateway(**two_targets(first, second)) as (app, stub):
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Rerank(request("r", QUERY, TEXTS), timeout=5)
            elapsed = time.perf_counter() - started
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "documents[2] is not acceptable" in (caught.value.details() or "")
    assert len(first.requests) == 1 and len(second.requests) == 0
    assert app.router.events.count("retry") == 0 and app.router.events.count("fallback") == 0
    assert elapsed < 0.5


async def test_a_field_one_provider_cannot_honour_fails_over_to_one_that_can() -> None:
    with fakes({}, {}) as (first, second):
        settings = two_targets(first, second)
        settings["providers"]["second"] = provider_config(second, truncation_none=True)
        message = request("r", QUERY, TEXTS)
        message.truncation = pb.TRUNCATION_NONE
        async with gateway(**settings) as (_, stub):
            reply = await stub.Rerank(message, timeout=5)
            settings_both_refuse = two_targets(first, second)
        async with gateway(**settings_both_refuse) as (_, stub):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Rerank(message, timeout=5)
    assert reply.provider == "second"
    assert [(a.provider, a.outcome) for a in reply.attempts] == [
        ("first", "INVALID_ARGUMENT"),
        ("second", "OK"),
    ]
    assert "not supported by first" in reply.attempts[0].message
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == "UNSUPPORTED_BY_PROVIDER"
    assert not first.requests and len(second.requests) == 1  # refused before anything was sent


async def test_deadline_exceeded_within_50ms_when_every_target_hangs_and_calls_are_cancelled() -> None:
    with fakes({}, {}) as (first, second):
        first.inject(*[Hang(5.0)] * 10)
        second.inject(*[Hang(5.0)] * 10)
        # The per-attempt timeout lets the route move on: first, first again, second, ...
        settings = two_targets(first, second, retry={**FAST_RETRY, "attempt_timeout_s": 0.12})
        async with gateway(**settings) as (_app, stub):
            deadline = 0.5
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Rerank(request("r", QUERY, TEXTS), timeout=deadline)
            elapsed = time.perf_counter() - started
            await asyncio.sleep(0.3)  # any attempt started after the deadline would show up here
            sent = len(first.requests) + len(second.requests)
            closed = first.closed_early + second.closed_early
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed <= deadline + 0.05, elapsed
    assert len(first.requests) == 2 and len(second.requests) >= 1
    # Every hanging provider call was abandoned by closing its connection: none left behind.
    assert closed == sent, (closed, sent)


async def test_server_enforces_its_default_deadline_when_the_caller_sets_none() -> None:
    with fakes({}) as (only,):
        only.inject(*[Hang(5.0)] * 5)
        settings = {
            "providers": {"only": provider_config(only)},
            "routes": {"r": {"targets": [{"provider": "only", "model": "m"}], "retry": FAST_RETRY}},
            "default_deadline_s": 0.3,
        }
        async with gateway(**settings) as (_, stub):
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Rerank(request("r", QUERY, TEXTS))  # no gRPC deadline
            elapsed = time.perf_counter() - started
            await asyncio.sleep(0.2)
    # The status comes from the server's router, not from a client-side timer.
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert reason_of(caught.value) == "DEADLINE_EXCEEDED"
    assert 0.3 <= elapsed <= 0.35, elapsed
    assert (len(only.requests), only.closed_early) == (1, 1)


async def test_caller_cancellation_closes_the_provider_connection() -> None:
    with fakes({}) as (only,):
        only.inject(Hang(5.0))
        settings = {
            "providers": {"only": provider_config(only)},
            "routes": {"r": {"targets": [{"provider": "only", "model": "m"}]}},
        }
        async with gateway(**settings) as (_, stub):
            call = stub.Rerank(request("r", QUERY, TEXTS), timeout=10)
            for _ in range(200):
                if only.requests:
                    break
                await asyncio.sleep(0.01)
            assert len(only.requests) == 1
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            for _ in range(100):
                if only.closed_early:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            assert only.closed_early == 1
            assert len(only.requests) == 1  # no retry after the caller went away


def _texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = [
        "paris",
        "france",
        "capital",
        "city",
        "wine",
        "river",
        "museum",
        "tower",
        "berlin",
        "rome",
        "lyon",
        "bread",
    ]
    return [" ".join(rng.choices(words, k=rng.randint(3, 9))) + f" #{i}" for i in range(count)]


@pytest.mark.parametrize("top_n", [0, 25])
async def test_5000_documents_to_a_1000_document_provider_are_chunked_and_merged(top_n: int) -> None:
    texts = _texts(5000, seed=7)
    query = "capital city of france with a museum"
    with fakes({"max_documents": 1000}) as (only,):
        only.inject(Status(503, {"message": "blip"}))  # one chunk fails once and is retried alone
        settings = {
            "providers": {"only": provider_config(only)},
            "routes": {
                "big": {
                    "targets": [{"provider": "only", "model": "m"}],
                    "retry": FAST_RETRY,
                    "chunk_concurrency": 3,
                }
            },
        }
        async with gateway(**settings) as (_, stub):
            reply = await stub.Rerank(request("big", query, texts, top_n=top_n), timeout=30)
    expected = expected_ranking(query, texts, top_n or None)
    assert [r.index for r in reply.results] == expected
    assert len(reply.results) == (top_n or 5000)
    assert reply.usage.search_units == 5 and reply.usage.documents == 5000
    assert len(only.requests) == 6  # five chunks, one of them twice
    assert all(len(r.json()["documents"]) <= 1000 for r in only.requests)
    assert all("top_n" not in r.json() for r in only.requests)  # top_n only after the merge
    outcomes = Counter(a.outcome for a in reply.attempts)
    assert outcomes == {"OK": 5, "UNAVAILABLE": 1}
    assert any(a.message.startswith("chunk ") for a in reply.attempts if a.outcome != "OK")


async def test_a_chunk_that_fails_for_good_moves_the_whole_request_to_the_fallback() -> None:
    """Scores of one model are comparable across chunks, of two models not: no mixing."""
    texts = _texts(30, seed=3)
    with fakes({"max_documents": 10}, {}) as (first, second):
        first.inject(Delay(0.05), Status(500), Status(500), Status(500))
        async with gateway(**two_targets(first, second)) as (_, stub):
            reply = await stub.Rerank(request("r", QUERY, texts), timeout=5)
    assert reply.provider == "second"
    assert [r.index for r in reply.results] == expected_ranking(QUERY, texts)
    assert len(second.requests) == 1


async def test_list_models_shows_aliases_and_targets_in_fallback_order() -> None:
    with fakes({"max_documents": 1000}, {}) as (first, second):
        settings = {
            "providers": {"first": provider_config(first), "second": provider_config(second)},
            "routes": {
                "r": {
                    "targets": [
                        {"provider": "second", "model": "backup", "priority": 1},
                        {"provider": "first", "model": "m1", "weight": 3},
                        {"provider": "second", "model": "m2", "weight": 1},
                    ]
                }
            },
        }
        async with gateway(**settings) as (_, stub):
            listed = await stub.ListModels(pb.ListModelsRequest(), timeout=5)
    route = next(m for m in listed.models if m.name == "r")
    assert route.alias
    assert [(t.provider, t.model, t.weight, t.max_documents, t.priority) for t in route.targets] == [
        ("first", "m1", 3, 1000, 0),
        ("second", "m2", 1, 0, 0),
        ("second", "backup", 1, 0, 1),
    ]
    assert [t.kind for t in route.targets] == ["generic"] * 3


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def models(self) -> list[str]:
        return []


def test_weights_share_traffic_among_equal_priorities_and_fallbacks_come_last() -> None:
    a, b, c = (
        Target(_Named(n), "m", weight=w, priority=p) for n, w, p in [("a", 3, 0), ("b", 1, 0), ("c", 5, 1)]
    )  # type: ignore[arg-type]
    router = Router({}, {"r": [a, b, c]}, rng=random.Random(1))
    firsts = Counter(router.resolve("r")[0].provider.name for _ in range(2000))
    lasts = Counter(router.resolve("r")[-1].provider.name for _ in range(200))
    assert lasts == {"c": 200}
    assert 0.70 < firsts["a"] / 2000 < 0.80  # weight 3 of 4


@settings(max_examples=300, deadline=None)
@given(
    scores=st.lists(st.sampled_from([0.0, -0.0, 0.25, 0.5, 0.9, -1.0]), max_size=25),
    top_n=st.sampled_from([None, 1, 3, 30]),
    seed=st.integers(0, 1000),
)
def test_ranking_is_best_first_with_ties_in_document_order(
    scores: list[float], top_n: int | None, seed: int
) -> None:
    items = [Scored(index, score) for index, score in enumerate(scores)]
    random.Random(seed).shuffle(items)  # providers answer in any order
    expected = sorted(items, key=lambda s: (-s.score, s.index))
    assert _rank(items, top_n) == (expected[:top_n] if top_n else expected)
