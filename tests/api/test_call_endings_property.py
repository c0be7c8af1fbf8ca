"""A property over random mixes of call endings (hypothesis): whatever the mix, the server's access
lines and counters agree one to one with the calls it served.

Each example makes a handful of concurrent calls, each ending its own way: an answer, an error
(unknown model, invalid request), the caller cancelling at a random moment (before, during or after
the initial-metadata send), a deadline running out at a random moment, a stream left after a few
messages. Then:

- every call rerankd started (the caller saw its x-request-id, or a status from it) has exactly
  one access line, and no call has two; a call the caller abandoned before gRPC handed it to
  rerankd has none (gRPC's core ends those; rerankd never sees them);
- the line's status is the true one (the answer's code, or CANCELLED / DEADLINE_EXCEEDED / OK for
  the racing endings);
- rerankd_calls_total and rerankd_caller_calls_total moved once per line, with its status;
- nothing was logged at ERROR and nothing is INTERNAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rerankd.server import App
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.api.endings import RERANK, STREAM, endings_app, ledger

pytestmark = pytest.mark.slow

METHODS = st.sampled_from([RERANK, STREAM])
ENDING = st.one_of(
    st.tuples(st.just("answer"), METHODS, st.just(0)),
    st.tuples(st.just("unknown-model"), METHODS, st.just(0)),
    st.tuples(st.just("invalid"), METHODS, st.just(0)),
    st.tuples(st.just("cancel"), METHODS, st.integers(0, 400)),  # ms after the call starts
    st.tuples(st.just("deadline"), METHODS, st.integers(30, 400)),  # the call's deadline in ms
    st.tuples(st.just("leave-stream"), st.just(STREAM), st.integers(1, 6)),  # messages read first
)
EXPECTED = {
    "answer": {"OK"},
    "unknown-model": {"NOT_FOUND"},
    "invalid": {"INVALID_ARGUMENT"},
    "cancel": {"CANCELLED", "OK"},
    "deadline": {"DEADLINE_EXCEEDED", "OK"},
    "leave-stream": {"CANCELLED", "OK"},
}
_ids = itertools.count()


@pytest.fixture(scope="module")
async def app() -> AsyncIterator[App]:
    async with endings_app() as served:
        yield served


def _request(kind: str, request_id: str) -> pb.RerankRequest:
    model = {"answer": "hosted", "unknown-model": "no-such-model", "leave-stream": "hosted"}.get(kind, "slow")
    count = 40 if kind == "leave-stream" else 3
    documents = [pb.Document(text=f"Passage {i} on rivers and bridges.") for i in range(count)]
    query = "" if kind == "invalid" else "bridges"
    return pb.RerankRequest(model=model, query=query, documents=documents, request_id=request_id)


async def _one(stub: pb_grpc.RerankServiceStub, kind: str, method: str, value: int) -> dict[str, Any]:
    """Make one call that ends as `kind` says; what the caller saw of it."""
    request_id = f"prop-{next(_ids)}"
    request = _request(kind, request_id)
    timeout = value / 1000 if kind == "deadline" else 10.0
    if method == RERANK:
        call: Any = stub.Rerank(request, timeout=timeout)
    else:
        per_message = 1 if kind == "leave-stream" else 0
        call = stub.RerankStream(
            pb.RerankStreamRequest(request=request, results_per_message=per_message), timeout=timeout
        )

    async def consume() -> None:
        if method == RERANK:
            await call
            return
        read = 0
        async for _ in call:
            read += 1
            if kind == "leave-stream" and read >= value:
                call.cancel()
                return

    work = asyncio.ensure_future(consume())
    if kind == "cancel":
        await asyncio.sleep(value / 1000)
        call.cancel()
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):  # the ending is read below
        await work
    code = await call.code()
    started = any(key == "x-request-id" for key, _ in (await call.initial_metadata() or ()))
    reached = started or code.name in {"OK", "NOT_FOUND", "INVALID_ARGUMENT"}
    return {"request_id": request_id, "kind": kind, "method": method, "code": code.name, "reached": reached}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endings=st.lists(ENDING, min_size=1, max_size=8))
async def test_access_lines_and_counters_agree_one_to_one_with_the_calls(
    app: App, endings: list[tuple[str, str, int]]
) -> None:
    async with grpc.aio.insecure_channel(app.addresses[0]) as channel:
        stub = pb_grpc.RerankServiceStub(channel)
        await channel.channel_ready()
        with ledger() as book:
            made = await asyncio.gather(*(_one(stub, *ending) for ending in endings))
            must = sum(1 for call in made if call["reached"])
            lines = await book.settled(must, timeout=5.0)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_id.setdefault(line["request_id"], []).append(line)
    assert set(by_id) <= {call["request_id"] for call in made}, "a line for a call nobody made"
    for call in made:
        found = by_id.get(call["request_id"], [])
        assert len(found) <= 1, f"two lines for one call: {found}"
        if call["reached"]:
            assert len(found) == 1, f"no line for a call rerankd started: {call}"
        if found:
            (line,) = found
            assert line["method"] == call["method"]
            assert line["status"] in EXPECTED[call["kind"]], (call, line)
            if call["kind"] in {"answer", "unknown-model", "invalid"}:
                assert line["status"] == call["code"]
    book.check(lines)
