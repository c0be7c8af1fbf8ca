"""RerankStream with `progressive`: the header at once, each finished chunk's scores, then the ranking."""

from __future__ import annotations

from rerankd.v1 import rerank_pb2 as pb

from tests.conftest import running_app, stub_for
from tests.examples import FRANCE_DOCS, FRANCE_QUERY
from tests.fakes.cohere import CONTRACT


async def _collect(stub, request: pb.RerankStreamRequest) -> list[pb.RerankStreamResponse]:
    return [message async for message in stub.RerankStream(request, timeout=30)]


async def test_chunked_request_streams_partial_scores_before_the_ranking() -> None:
    documents = [pb.Document(text=f"{FRANCE_DOCS[i % 3]} Item {i}.") for i in range(2500)]
    request = pb.RerankRequest(model="upstream/rerank-v3.5", query=FRANCE_QUERY, documents=documents, top_n=5)
    with CONTRACT.fake() as fake:
        settings = {"providers": {"upstream": CONTRACT.config(fake.url)}, "local_enabled": False}
        async with running_app(**settings) as app, stub_for(app) as stub:
            progressive = await _collect(stub, pb.RerankStreamRequest(request=request, progressive=True))
            plain = await _collect(stub, pb.RerankStreamRequest(request=request))
    header = progressive[0].header
    assert progressive[0].WhichOneof("event") == "header"
    assert (header.provider, header.model, header.total_results) == ("", "upstream/rerank-v3.5", 5)
    partials = [m.results for m in progressive if m.WhichOneof("event") == "results" and m.results.partial]
    assert len(partials) == 3  # 1,000 + 1,000 + 500 documents: the Cohere limit splits the list
    indices = [r.index for p in partials for r in p.results]
    assert sorted(indices) == list(range(2500))
    for partial in partials:
        scores = [r.relevance_score for r in partial.results]
        assert scores == sorted(scores, reverse=True) and not partial.results[0].HasField("document")
    final = [
        r
        for m in progressive
        if m.WhichOneof("event") == "results" and not m.results.partial
        for r in m.results.results
    ]
    expected = [r for m in plain if m.WhichOneof("event") == "results" for r in m.results.results]
    assert [(r.index, r.relevance_score) for r in final] == [(r.index, r.relevance_score) for r in expected]
    assert len(final) == 5
    last = progressive[-1].summary
    assert progressive[-1].WhichOneof("event") == "summary" and last.provider == "upstream" and last.model
    assert all(m.WhichOneof("event") != "results" or m.results.partial for m in progressive[1:4])


async def test_unchunked_request_has_no_partials(stub) -> None:
    request = pb.RerankRequest(query=FRANCE_QUERY, documents=[pb.Document(text=d) for d in FRANCE_DOCS])
    messages = await _collect(stub, pb.RerankStreamRequest(request=request, progressive=True))
    kinds = [m.WhichOneof("event") for m in messages]
    assert kinds == ["header", "results", "summary"]
    assert not messages[1].results.partial and messages[1].results.results[0].index == 1
    assert messages[-1].summary.provider == "local"
