"""A 10,000-document RerankStream with return_documents through a provider that takes 1,000 at a time.

The Cohere adapter splits the request into 10 provider calls (its fake is tests/fakes/cohere.py).
The answer, documents included, is larger than gRPC's default 4 MiB message limit, which the
client channel keeps: RerankStream must pack it into messages under that limit, in rank order,
while the same request as a unary Rerank cannot come back on that channel.
"""

from __future__ import annotations

import grpc
import pytest
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.conftest import running_app
from tests.fakes.base import fake_score
from tests.fakes.cohere import CONTRACT

DEFAULT_LIMIT = 4 * 1024 * 1024  # gRPC's default max receive message size
COUNT = 10_000


def _documents() -> list[pb.Document]:
    filler = " ".join(["evidence"] * 60)  # about 540 bytes a document: 5.4 MB in all
    topics = ("apple orchards", "stream packing", "message limits", "rerank chunks")
    return [pb.Document(id=f"doc-{i}", text=f"{topics[i % 4]} {i} {filler}") for i in range(COUNT)]


@pytest.mark.slow
async def test_ten_thousand_documents_stream_back_with_their_documents() -> None:
    documents = _documents()
    query = "message limits of a stream"
    request = pb.RerankRequest(model=f"upstream/{CONTRACT.model}", query=query, documents=documents)
    request.return_documents = True
    with CONTRACT.fake() as fake:
        async with running_app(
            providers={"upstream": CONTRACT.config(fake.url)}, local_enabled=False, http_enabled=False
        ) as app:
            # Default receive limit; the send limit is raised only because the request itself is 5 MB.
            options = (("grpc.max_send_message_length", 64 * 1024 * 1024),)
            async with grpc.aio.insecure_channel(app.addresses[0], options=options) as channel:
                stub = pb_grpc.RerankServiceStub(channel)
                replies = [
                    reply
                    async for reply in stub.RerankStream(pb.RerankStreamRequest(request=request), timeout=60)
                ]
                with pytest.raises(grpc.aio.AioRpcError) as unary:
                    await stub.Rerank(request, timeout=60)
        sent = [len(r.json()["documents"]) for r in fake.requests if r.path == "/v2/rerank"]
    assert unary.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # the answer exceeds 4 MiB
    assert sent[:10] == [1_000] * 10  # the stream's request went out as 10 chunks
    assert replies[0].HasField("header") and replies[0].header.total_results == COUNT
    assert replies[-1].HasField("summary") and replies[-1].summary.usage.documents == COUNT
    chunks = [r.results for r in replies[1:-1]]
    assert len(chunks) >= 2 and all(r.HasField("results") for r in replies[1:-1])
    sizes = [r.ByteSize() for r in replies]
    assert max(sizes) < DEFAULT_LIMIT and sum(sizes) > DEFAULT_LIMIT
    results = [result for chunk in chunks for result in chunk.results]
    assert [chunk.first_rank for chunk in chunks] == _starts([len(chunk.results) for chunk in chunks])
    assert sorted(r.index for r in results) == list(range(COUNT))
    assert all(r.document == documents[r.index] for r in results)
    scores = [r.relevance_score for r in results]
    assert scores == sorted(scores, reverse=True)
    best = max(range(COUNT), key=lambda i: (fake_score(query, documents[i].text), -i))
    assert results[0].index == best


def _starts(lengths: list[int]) -> list[int]:
    starts, total = [], 0
    for length in lengths:
        starts.append(total)
        total += length
    return starts
