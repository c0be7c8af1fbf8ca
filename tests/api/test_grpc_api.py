"""RerankService over a real loopback server with the embedded model: answers, streams, errors."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rerankd.v1 import rerank_pb2 as pb

from tests.examples import APPLE_BEST, APPLE_DOCS, APPLE_QUERY, FRANCE_BEST, FRANCE_DOCS, FRANCE_QUERY


def request(query: str, docs: list[str], **kwargs: object) -> pb.RerankRequest:
    return pb.RerankRequest(query=query, documents=[pb.Document(text=d) for d in docs], **kwargs)


async def stream_results(
    stub, req: pb.RerankRequest, **kwargs: object
) -> tuple[list, pb.RerankStreamHeader, pb.RerankStreamSummary]:
    header, summary, results = None, None, []
    async for message in stub.RerankStream(pb.RerankStreamRequest(request=req, **kwargs), timeout=30):
        kind = message.WhichOneof("event")
        if kind == "header":
            assert header is None and not results, "header comes first, once"
            header = message.header
        elif kind == "results":
            assert header is not None and summary is None
            assert message.results.first_rank == len(results)
            results.extend(message.results.results)
        else:
            summary = message.summary
    assert header is not None and summary is not None
    return results, header, summary


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None, "rich status details expected"
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


@pytest.mark.parametrize(
    ("query", "docs", "best"),
    [(APPLE_QUERY, APPLE_DOCS, APPLE_BEST), (FRANCE_QUERY, FRANCE_DOCS, FRANCE_BEST)],
)
async def test_seed_examples_unary_and_stream_agree(stub, query: str, docs: list[str], best: int) -> None:
    unary = await stub.Rerank(request(query, docs), timeout=30)
    assert unary.results[0].index == best
    assert unary.provider == "local" and unary.model == "ms-marco-MiniLM-L-12-v2"
    scores = [r.relevance_score for r in unary.results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert sorted(r.index for r in unary.results) == list(range(len(docs)))
    assert unary.usage.documents == len(docs) and unary.usage.total_tokens > 0
    assert [a.outcome for a in unary.attempts] == ["OK"]

    streamed, header, summary = await stream_results(stub, request(query, docs))
    assert header.total_results == len(docs) and header.provider == "local"
    assert [(r.index, r.relevance_score) for r in streamed] == [
        (r.index, r.relevance_score) for r in unary.results
    ]
    assert summary.usage.documents == len(docs)


async def test_top_n_and_return_documents(stub) -> None:
    docs = [pb.Document(id=f"d{i}", text=t, fields={"n": str(i)}) for i, t in enumerate(APPLE_DOCS)]
    reply = await stub.Rerank(
        pb.RerankRequest(query=APPLE_QUERY, documents=docs, top_n=2, return_documents=True), timeout=30
    )
    assert len(reply.results) == 2
    top = reply.results[0]
    assert top.index == APPLE_BEST and top.document == docs[APPLE_BEST]
    everything = await stub.Rerank(request(APPLE_QUERY, APPLE_DOCS, top_n=99), timeout=30)
    assert len(everything.results) == len(APPLE_DOCS)
    assert not everything.results[0].HasField("document")


async def test_rank_fields_score_the_named_fields(stub) -> None:
    docs = [
        pb.Document(text="unrelated filler", fields={"title": "Paris is the capital of France."}),
        pb.Document(
            text="Paris is the capital of France.", fields={"title": "Madrid is the capital of Spain."}
        ),
    ]
    reply = await stub.Rerank(
        pb.RerankRequest(query=FRANCE_QUERY, documents=docs, rank_fields=["title"]), timeout=30
    )
    assert reply.results[0].index == 0


async def test_same_request_same_scores(stub) -> None:
    first = await stub.Rerank(request(APPLE_QUERY, APPLE_DOCS), timeout=30)
    second = await stub.Rerank(request(APPLE_QUERY, APPLE_DOCS), timeout=30)
    assert [r.relevance_score for r in first.results] == [r.relevance_score for r in second.results]


async def test_max_tokens_per_doc_cuts_documents(stub) -> None:
    long_doc = "Paris is the capital of France. " * 40
    full = await stub.Rerank(request(FRANCE_QUERY, [long_doc]), timeout=30)
    cut = await stub.Rerank(request(FRANCE_QUERY, [long_doc], max_tokens_per_doc=8), timeout=30)
    assert cut.usage.total_tokens < full.usage.total_tokens
    assert cut.usage.total_tokens <= 8 + 10 + 3


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (request("", ["a"]), "query"),
        (request("   \n\t", ["a"]), "query"),
        (request("q", []), "documents"),
        (request("q", ["fine", "  "]), "documents[1]"),
        (request("q", ["fine"], rank_fields=["title"]), "documents[0]"),
        (request("q", ["fine"], rank_fields=["title", "title"]), "rank_fields"),
        (request(FRANCE_QUERY, ["Paris " * 600], truncation=pb.TRUNCATION_NONE), "documents[0]"),
        (request("q", ["fine"], truncation=7), "truncation"),  # proto3 enums are open: 7 parses
    ],
)
async def test_bad_input_names_the_field(stub, req: pb.RerankRequest, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Rerank(req, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_request_fields(caught.value)
    assert field in caught.value.details()


async def test_truncation_end_is_the_default_for_long_documents(stub) -> None:
    reply = await stub.Rerank(request(FRANCE_QUERY, ["Paris " * 600, "Berlin is in Germany."]), timeout=30)
    assert len(reply.results) == 2 and reply.usage.total_tokens <= 512 + 20


async def test_unknown_model_is_not_found_and_lists_known_names(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Rerank(request("q", ["a"], model="no-such-model"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "default" in caught.value.details() and "ms-marco-MiniLM-L-12-v2" in caught.value.details()
    assert "model" in bad_request_fields(caught.value)


async def test_stream_reports_errors_as_status(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream_results(stub, request("", ["a"]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stream_packs_results_per_message(stub) -> None:
    docs = [f"document number {i} about France" for i in range(10)]
    results, header, _ = await stream_results(stub, request(FRANCE_QUERY, docs), results_per_message=3)
    assert header.total_results == 10 and len(results) == 10


async def test_request_and_trace_ids_come_back(stub) -> None:
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    call = stub.Rerank(
        request(FRANCE_QUERY, FRANCE_DOCS),
        metadata=(("traceparent", f"00-{trace_id}-{span_id}-01"), ("x-request-id", "req-42")),
        timeout=30,
    )
    reply = await call
    initial = dict(await call.initial_metadata())
    trailing = dict(await call.trailing_metadata())
    assert reply.id == "req-42" and initial["x-request-id"] == "req-42"
    assert reply.trace.trace_id == trace_id and reply.trace.parent_span_id == span_id
    assert initial["x-trace-id"] == trace_id and trailing["x-provider"] == "local"
    assert len(reply.trace.span_id) == 16 and reply.trace.span_id != span_id


async def test_batch_answers_each_request_by_id(stub) -> None:
    async def requests():
        yield pb.RerankBatchRequest(request=request(FRANCE_QUERY, FRANCE_DOCS, request_id="good"))
        yield pb.RerankBatchRequest(request=request("", ["a"], request_id="bad"))
        yield pb.RerankBatchRequest(request=request(APPLE_QUERY, APPLE_DOCS, request_id="apple"))

    answers = {a.request_id: a async for a in stub.RerankBatch(requests(), timeout=30)}
    assert set(answers) == {"good", "bad", "apple"}
    assert answers["good"].response.results[0].index == FRANCE_BEST
    assert answers["apple"].response.results[0].index == APPLE_BEST
    assert answers["bad"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert answers["bad"].error.fields == ["query"]


async def test_batch_refuses_a_request_id_already_in_flight_on_the_stream(stub) -> None:
    async def requests():
        yield pb.RerankBatchRequest(request=request(FRANCE_QUERY, FRANCE_DOCS * 20, request_id="a"))
        yield pb.RerankBatchRequest(request=request(APPLE_QUERY, APPLE_DOCS, request_id="a"))

    answers = [a async for a in stub.RerankBatch(requests(), timeout=60)]
    assert sorted(a.WhichOneof("outcome") for a in answers) == ["error", "response"]
    (refused,) = [a for a in answers if a.HasField("error")]
    (answered,) = [a for a in answers if a.HasField("response")]
    assert refused.request_id == answered.request_id == "a"
    assert refused.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert list(refused.error.fields) == ["request.request_id"] and "in flight" in refused.error.message
    assert len(answered.response.results) == len(FRANCE_DOCS) * 20  # the first request's answer


async def test_batch_reuses_a_request_id_once_its_answer_is_written(stub) -> None:
    sent = asyncio.Event()

    async def requests():
        yield pb.RerankBatchRequest(request=request(FRANCE_QUERY, FRANCE_DOCS, request_id="b"))
        await sent.wait()
        yield pb.RerankBatchRequest(request=request(APPLE_QUERY, APPLE_DOCS, request_id="b"))

    answers = []
    async for answer in stub.RerankBatch(requests(), timeout=60):
        answers.append(answer)
        sent.set()
    assert [a.WhichOneof("outcome") for a in answers] == ["response", "response"]
    assert answers[1].response.results[0].index == APPLE_BEST


async def test_list_models(stub) -> None:
    reply = await stub.ListModels(pb.ListModelsRequest(), timeout=10)
    by_name = {m.name: m for m in reply.models}
    assert by_name["default"].alias and by_name["default"].targets[0].provider == "local"
    assert not by_name["ms-marco-MiniLM-L-12-v2"].alias
