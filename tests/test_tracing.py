"""Trace context extraction, precedence and outbound headers."""

from __future__ import annotations

import grpc
import httpx
import pytest
from rerankd import tracing
from rerankd.domain import TraceContext
from rerankd.v1 import rerank_pb2 as pb

from tests.conftest import running_app, stub_for

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_traceparent_is_read_and_malformed_values_ignored() -> None:
    ctx = tracing.incoming(TraceContext(), {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "k=v"})
    assert (ctx.trace_id, ctx.span_id, ctx.tracestate) == (TRACE, SPAN, "k=v")
    for bad in ("garbage", f"00-{'0' * 32}-{SPAN}-01", f"ff-{TRACE}-{SPAN}-01", f"00-{TRACE}-{SPAN}"):
        generated = tracing.incoming(TraceContext(), {"traceparent": bad})
        assert generated.trace_id != TRACE and len(generated.trace_id) == 32 and generated.span_id == ""


def test_message_field_wins_over_headers_and_portkey_aliases_work() -> None:
    other = "1" * 32
    ctx = tracing.incoming(
        TraceContext(trace_id=TRACE, span_id=SPAN), {"traceparent": f"00-{other}-{SPAN}-01"}
    )
    assert ctx.trace_id == TRACE
    ctx = tracing.incoming(TraceContext(), {"x-portkey-trace-id": TRACE, "x-portkey-span-id": SPAN})
    assert (ctx.trace_id, ctx.span_id) == (TRACE, SPAN)


def test_server_span_is_a_child_and_outbound_headers_carry_it() -> None:
    server = tracing.server_trace(TraceContext(trace_id=TRACE, span_id=SPAN))
    assert server.parent_span_id == SPAN and server.span_id != SPAN
    headers = tracing.outbound_headers(server, "req-1")
    assert headers["traceparent"] == f"00-{TRACE}-{server.span_id}-01"
    assert headers["x-request-id"] == "req-1"


def test_request_id_is_taken_only_when_well_formed() -> None:
    assert tracing.request_id("", {"x-request-id": "abc-123"}) == "abc-123"
    assert tracing.request_id("mine", {"x-request-id": "abc"}) == "mine"
    generated = tracing.request_id("bad id with spaces\n", {})
    assert " " not in generated and len(generated) == 24


def test_without_an_exporter_spans_are_ids_only_and_still_propagate() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    server = tracing.server_trace(TraceContext(trace_id=TRACE, span_id=SPAN))
    for exporter in (None, InMemorySpanExporter()):
        tracing.setup(exporter=exporter)
        try:
            span = tracing.open_server_span(
                server, "rerankd.v1.RerankService/Rerank", {"rerankd.documents": 2}
            )
            with tracing.current(span):
                assert span.get_span_context().span_id == int(server.span_id, 16)
                with tracing.child_span("rerankd.provider_attempt", {}) as attempt:
                    headers = tracing.inject(tracing.outbound_headers(server, "r1"), attempt)
            span.end()
            ids = attempt.get_span_context()
            assert ids.trace_id == int(TRACE, 16) and ids.span_id != int(server.span_id, 16)
            assert headers["traceparent"] == f"00-{TRACE}-{ids.span_id:016x}-01"
            if exporter is None:
                assert not span.is_recording() and not attempt.is_recording()
            else:
                assert [s.name for s in exporter.get_finished_spans()] == [
                    "rerankd.provider_attempt",
                    "rerankd.v1.RerankService/Rerank",
                ]
        finally:
            tracing.setup()


# -- x-metadata nested past the recursion limit (issue 17, finding 2) ----------------------------

DEEP = "[" * 1000 + "]" * 1000  # 2 KB; json.loads alone would raise RecursionError
DEEP_IN_OBJECT = '{"a":' + "[" * 1000 + "]" * 1000 + "}"


async def test_deeply_nested_metadata_headers_are_invalid_argument_on_every_call_and_front_door() -> None:
    request = pb.RerankRequest(model="nope", query="q", documents=[pb.Document(text="a")])
    async with running_app(local_enabled=False) as app, stub_for(app) as stub:
        for value in (DEEP, DEEP_IN_OBJECT):
            metadata = (("x-metadata", value),)
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await stub.Rerank(request, metadata=metadata, timeout=10)
            assert unary.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "x-metadata" in (unary.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as streamed:
                _ = [
                    m
                    async for m in stub.RerankStream(
                        pb.RerankStreamRequest(request=request), metadata=metadata
                    )
                ]
            assert streamed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            batch = stub.RerankBatch(metadata=metadata, timeout=10)
            await batch.write(pb.RerankBatchRequest(request=request))
            await batch.done_writing()
            answers = [m async for m in batch]
            assert [a.error.code for a in answers] == [grpc.StatusCode.INVALID_ARGUMENT.value[0]]
        async with httpx.AsyncClient(base_url=f"http://{app.http_address}", timeout=10) as http:
            body = {"model": "nope", "query": "q", "documents": ["a"]}
            for path, header in (("/v2/rerank", "x-metadata"), ("/portkey/v1/rerank", "x-portkey-metadata")):
                reply = await http.post(path, json=body, headers={header: DEEP_IN_OBJECT})
                assert reply.status_code == 400 and header in reply.text


def test_metadata_depth_is_counted_outside_strings_and_within_the_bound() -> None:
    inside = '{"a": "[[[[[[[[[[[[[[[[[[[[\\"[[[[", "b": [[1]]}'
    assert tracing.json_depth_within(inside, 3) and not tracing.json_depth_within(inside, 2)
    nested = (
        '{"a":'
        + "[" * (tracing.MAX_METADATA_JSON_DEPTH - 1)
        + "]" * (tracing.MAX_METADATA_JSON_DEPTH - 1)
        + "}"
    )
    assert tracing.header_metadata({"x-metadata": nested})["a"].startswith("[[")
