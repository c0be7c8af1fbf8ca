"""Trace context extraction, precedence and outbound headers; the OTEL_* variables, the resource,
and the semantic conventions' rules (URL redaction, span status)."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
import httpx
import pytest
import rerankd
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


# -- the standard OTEL_* variables and the semantic conventions (issue 22) -----------------------


@pytest.mark.parametrize(
    ("variables", "records"),
    [
        ({}, False),  # nothing configured: ids only, no SDK work
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, True),  # otlp by default with an endpoint
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),  # the exporter's default endpoint (localhost)
    ],
)
def test_which_variables_turn_recording_on(
    otel_env: pytest.MonkeyPatch, variables: dict[str, str], records: bool
) -> None:
    for name, value in variables.items():
        otel_env.setenv(name, value)
    tracing.setup()
    try:
        assert tracing.recording() is records
        # Not ended: nothing is queued for export, so no flush tries the unreachable collector.
        span = tracing.open_server_span(tracing.server_trace(TraceContext(trace_id=TRACE)), "m", {})
        assert span.is_recording() is records
    finally:
        tracing.setup()


def test_the_console_exporter_writes_spans_to_stdout(otel_env: pytest.MonkeyPatch, capfd) -> None:
    otel_env.setenv("OTEL_TRACES_EXPORTER", "console")
    tracing.setup()
    span = tracing.open_server_span(tracing.server_trace(TraceContext(trace_id=TRACE)), "console-span", {})
    span.end()
    tracing.shutdown()
    out = capfd.readouterr().out
    assert '"name": "console-span"' in out and TRACE in out


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
    ],
)
def test_unsupported_values_are_refused_naming_the_variable(
    otel_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    otel_env.setenv(name, value)
    otel_env.setenv("OTEL_TRACES_EXPORTER", "otlp" if name != "OTEL_TRACES_EXPORTER" else value)
    with pytest.raises(ValueError, match=f"^{name}: .*{value}"):
        tracing.check_environment()
    with pytest.raises(ValueError, match=f"^{name}: .*{value}"):
        tracing.setup()


def test_serve_refuses_a_bad_otel_variable_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RERANKD_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-m", "rerankd.cli", "serve", "--port", "0", "--http-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env | {"OTEL_TRACES_EXPORTER": "jaeger", "RERANKD_METRICS_PORT": "0"},
    )
    assert done.returncode == 2, done
    assert len(done.stderr.splitlines()) == 1 and "OTEL_TRACES_EXPORTER: jaeger unsupported" in done.stderr


def test_resource_names_rerankd_unless_the_variables_do(otel_env: pytest.MonkeyPatch) -> None:
    attributes = tracing.resource().attributes
    assert attributes["service.name"] == "rerankd" and attributes["service.version"] == rerankd.__version__
    otel_env.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,k8s.pod.name=p-1,service.version=9"
    )
    attributes = tracing.resource().attributes
    assert (attributes["service.name"], attributes["service.version"]) == ("from-attributes", "9")
    assert attributes["k8s.pod.name"] == "p-1"
    otel_env.setenv("OTEL_SERVICE_NAME", "search-reranker")  # wins over OTEL_RESOURCE_ATTRIBUTES
    assert tracing.resource().attributes["service.name"] == "search-reranker"


def test_provider_urls_lose_credentials_and_query_values() -> None:
    url = tracing._client_url("https://user:secret@example.test:8443/rerank?api-version=2024&key=sek&flag")
    assert url == {
        "server.address": "example.test",
        "server.port": 8443,
        "url.full": "https://example.test:8443/rerank?api-version=REDACTED&key=REDACTED&flag",
    }
    assert tracing._client_url("https://api.cohere.com/v2/rerank")["server.port"] == 443
    assert tracing._client_url("http://[::1]:81/x")["url.full"] == "http://[::1]:81/x"


def test_server_span_status_follows_each_convention() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    tracing.setup(exporter=exporter)
    try:
        cases = [("OK", None), ("INVALID_ARGUMENT", None), ("UNAVAILABLE", None), ("OK", 200)]
        cases += [("NOT_FOUND", 404), ("INTERNAL", 500), ("CANCELLED", 0)]
        for status, http_status in cases:
            span = tracing.open_server_span(tracing.server_trace(TraceContext(trace_id=TRACE)), status, {})
            tracing.end_server_span(span, status, http_status)
            span.end()
    finally:
        tracing.setup()
    ended = {
        (s.name, s.attributes.get("http.response.status_code")): s for s in exporter.get_finished_spans()
    }
    errors_ = {key for key, s in ended.items() if s.status.status_code is StatusCode.ERROR}
    assert errors_ == {("UNAVAILABLE", None), ("INTERNAL", 500)}
    assert ended[("INVALID_ARGUMENT", None)].attributes["rpc.grpc.status_code"] == 3
    assert ended[("UNAVAILABLE", None)].attributes["error.type"] == "UNAVAILABLE"
    assert ended[("INTERNAL", 500)].attributes["error.type"] == "500"
    assert "http.response.status_code" not in ended[("CANCELLED", None)].attributes  # nothing was sent
    assert "error.type" not in ended[("NOT_FOUND", 404)].attributes
