"""64 concurrent streams while 20% of provider calls fail in varied ways.

Two equivalent targets share the traffic (equal priority, equal weight) and back each other up;
one of them takes at most 20 documents per call, so most requests to it are chunked. Both fakes
fail a random 20% of calls: 429 with Retry-After, 500, 503, connection reset, malformed JSON, or
a hang that the per-attempt timeout cuts. Every call must
end with the exact ranking the fake's deterministic scores give, or with a clear retryable status;
every call ends exactly once, and no result is lost or repeated.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rerankd.v1 import rerank_pb2 as pb

from tests.fakes.base import Hang, Malformed, Reset, Status
from tests.fakes.generic import expected_ranking, provider_config
from tests.resilience.conftest import fakes, gateway, request

STREAMS = 64
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
FAULTS = [
    Status(429, {"message": "rate limited"}, {"Retry-After": "0.02"}),
    Status(500, {"message": "internal"}),
    Status(503, {"message": "overloaded"}),
    Reset(),
    Malformed(),
    Hang(1.0),
]
WORDS = ["river", "bridge", "museum", "harbour", "tower", "market", "school", "park", "forest", "valley"]


@dataclass
class Outcome:
    request_id: str
    indices: list[int] | None = None
    expected: list[int] | None = None
    code: grpc.StatusCode | None = None
    retryable_detail: bool = False
    header_then_summary: bool = False


def _case(number: int) -> tuple[str, list[str], int]:
    rng = random.Random(number)
    query = " ".join(rng.sample(WORDS, 3))
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(2, 6))) + f" ({number}.{i})" for i in range(30)]
    return query, texts, rng.choice([0, 5, 12])


async def _one(stub: object, number: int) -> Outcome:
    query, texts, top_n = _case(number)
    message = request("r", query, texts, top_n=top_n)
    message.request_id = f"call-{number}"
    outcome = Outcome(message.request_id, expected=expected_ranking(query, texts, top_n or None))
    kinds: list[str] = []
    indices: list[int] = []
    call = stub.RerankStream(pb.RerankStreamRequest(request=message, results_per_message=7), timeout=20)  # type: ignore[attr-defined]
    try:
        async for part in call:
            kind = part.WhichOneof("event")
            kinds.append(kind)
            if kind == "header":
                assert part.header.id == message.request_id
                assert part.header.total_results == len(outcome.expected)
            elif kind == "results":
                assert part.results.first_rank == len(indices)
                indices.extend(r.index for r in part.results.results)
            else:
                assert part.summary.attempts[-1].outcome == "OK"
    except grpc.aio.AioRpcError as error:
        outcome.code = error.code()
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                outcome.retryable_detail = info.metadata.get("retryable") == "true"
        assert not kinds, "a failed stream must not have sent a partial answer"
        return outcome
    outcome.indices = indices
    outcome.header_then_summary = (
        kinds[0] == "header" and kinds[-1] == "summary" and kinds.count("summary") == 1
    )
    return outcome


async def test_64_concurrent_streams_with_20_percent_of_provider_calls_failing() -> None:
    with fakes({"max_documents": 20}, {}) as (chunky, whole):
        chunky.chaos(0.2, FAULTS, seed=1)
        whole.chaos(0.2, FAULTS, seed=2)
        settings = {
            "providers": {
                "chunky": provider_config(chunky, max_concurrency=256),
                "whole": provider_config(whole, max_concurrency=256),
            },
            "routes": {
                "r": {
                    "targets": [{"provider": "chunky", "model": "a"}, {"provider": "whole", "model": "b"}],
                    "retry": {
                        "max_attempts": 3,
                        "initial_backoff_s": 0.01,
                        "max_backoff_s": 0.05,
                        "attempt_timeout_s": 0.3,
                    },
                }
            },
        }
        async with gateway(**settings) as (app, stub):
            started = time.perf_counter()
            outcomes = await asyncio.gather(*(_one(stub, n) for n in range(STREAMS)))
            elapsed = time.perf_counter() - started
            events = app.router.events
        faults = chunky.faults_served + whole.faults_served
        calls = len(chunky.requests) + len(whole.requests)

    assert len(outcomes) == STREAMS
    assert Counter(o.request_id for o in outcomes) == Counter(f"call-{n}" for n in range(STREAMS))
    answered = [o for o in outcomes if o.indices is not None]
    failed = [o for o in outcomes if o.indices is None]
    for o in answered:
        assert o.indices == o.expected, o.request_id  # exact ranking: nothing lost, nothing repeated
        assert len(set(o.indices)) == len(o.indices) and o.header_then_summary
    for o in failed:
        assert o.code in RETRYABLE and o.retryable_detail, (o.request_id, o.code)
    # The faults really happened, and retries and fallbacks absorbed almost all of them.
    assert faults >= 0.1 * calls and faults >= 10, (faults, calls)
    assert events.count("retry") > 0 and events.count("fallback") + events.count("retry") >= faults // 2
    assert len(answered) >= STREAMS - 4, [(o.request_id, o.code) for o in failed]
    assert elapsed < 15, elapsed
