"""Callers that stall: one that stops reading a stream, an idle RerankBatch stream, an HTTP body
that never finishes. Each is ended after its documented timeout, as one call with its status,
nothing logged as an error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from rerankd.server import App
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.api.endings import RERANK, STREAM, endings_app, ledger, start_upload
from tests.api.stalled import StalledCaller

pytestmark = pytest.mark.slow
BATCH = RERANK.replace("/Rerank", "/RerankBatch")


@pytest.fixture(scope="module")
async def app() -> AsyncIterator[App]:
    async with endings_app(
        stream_write_timeout_s=0.5, batch_idle_timeout_s=0.5, http_body_timeout_s=0.5
    ) as served:
        yield served


async def test_a_caller_that_stops_reading_a_stream_is_ended_after_the_write_timeout(app: App) -> None:
    documents = [pb.Document(text=f"Passage {i}: rivers and bridges. " * 6) for i in range(1000)]
    inner = pb.RerankRequest(model="hosted", query="bridges", documents=documents, return_documents=True)
    message = pb.RerankStreamRequest(request=inner, results_per_message=1).SerializeToString()
    caller = await asyncio.to_thread(StalledCaller, app.addresses[0])
    try:
        with ledger() as book:
            await asyncio.to_thread(caller.call, f"/{STREAM}", message)
            for _ in range(40):  # read what fits in the window, never acknowledging it
                await asyncio.to_thread(caller.pump, 0.05)
            lines = await book.settled(1, timeout=5.0)
        assert 0 < caller.received_bytes() < 200_000  # stalled: far less than the ~240 KB answer
        assert [(line["method"], line["status"]) for line in lines] == [(STREAM, "RESOURCE_EXHAUSTED")]
        book.check(lines)
    finally:
        caller.close()


async def test_an_idle_batch_stream_is_closed_unavailable(app: App) -> None:
    async with grpc.aio.insecure_channel(app.addresses[0]) as channel:
        stream = pb_grpc.RerankServiceStub(channel).RerankBatch()
        request = pb.RerankRequest(
            model="hosted", query="q", documents=[pb.Document(text="d")], request_id="b-1"
        )
        with ledger() as book:
            await stream.write(pb.RerankBatchRequest(request=request))
            answer = await stream.read()
            assert answer.request_id == "b-1" and answer.HasField("response")
            with pytest.raises(grpc.aio.AioRpcError) as ended:  # no more requests: idle
                await asyncio.wait_for(stream.read(), 5.0)
            lines = await book.settled(1)
    assert (
        ended.value.code() is grpc.StatusCode.UNAVAILABLE and "batch_idle_timeout_s" in ended.value.details()
    )
    assert [(line["method"], line["status"]) for line in lines] == [(BATCH, "OK")]
    book.check(lines)


async def test_an_http_body_that_never_finishes_gets_408(app: App) -> None:
    with ledger() as book:
        reader, writer = await start_upload(
            app.http_port, "slow-body-1", 5000, b'{"query": "bridges", "documents": ["'
        )
        status_line = await asyncio.wait_for(reader.readline(), 5.0)  # the caller stays, sending nothing
        writer.close()
        lines = await book.settled(1)
    assert status_line.startswith(b"HTTP/1.1 408")
    assert [(line["method"], line["status"], line["request_id"]) for line in lines] == [
        ("http/cohere-v2", "DEADLINE_EXCEEDED", "slow-body-1")
    ]
    book.check(lines)
