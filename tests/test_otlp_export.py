"""Spans reach a loopback OTLP collector over both standard protocols, OTLP/HTTP protobuf (a
threading HTTP server taking POST /v1/traces) and OTLP/gRPC (a grpc server implementing
TraceService/Export), configured only by the standard OTEL_* variables. The collectors decode
what arrives with opentelemetry-proto's messages; the tests check the spans' semantic-convention
attributes and that the caller's traceparent is their parent.
"""

from __future__ import annotations

import signal
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from rerankd import tracing
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.conftest import running_app, stub_for
from tests.examples import FRANCE_DOCS, FRANCE_QUERY
from tests.fakes.base import Status as FakeStatus
from tests.fakes.cohere import CohereFake
from tests.support import server_process

TRACE = "5bf92f3577b34da6a3ce929d0e0e4737"
CALLER_SPAN = "00f067aa0ba902b7"


class Collector:
    """What a loopback collector received: one decoded ExportTraceServiceRequest per export."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.exports: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        """(resource attributes, span) of every span received."""
        out = []
        for export in self.exports:
            for resource_spans in export.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                out += [(resource, s) for scope in resource_spans.scope_spans for s in scope.spans]
        return out


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


@pytest.fixture
def http_collector() -> Iterator[Collector]:
    collector = Collector("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            collector.paths.append(self.path)
            collector.exports.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    collector.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def grpc_collector() -> Iterator[Collector]:
    """An OTLP/gRPC receiver: TraceService/Export on a real grpc server (its own threads)."""
    collector = Collector("")

    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
            collector.exports.append(request)
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    collector.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield collector
    finally:
        server.stop(None)


async def test_spans_are_exported_over_otlp_http(http_collector: Collector, otel_env, stub) -> None:
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", http_collector.endpoint)
    otel_env.setenv("OTEL_SERVICE_NAME", "rerankd-test")
    tracing.setup()
    try:
        request = pb.RerankRequest(query=FRANCE_QUERY, documents=[pb.Document(text=d) for d in FRANCE_DOCS])
        await stub.Rerank(request, metadata=(("traceparent", f"00-{TRACE}-{CALLER_SPAN}-01"),), timeout=30)
    finally:
        tracing.shutdown()  # flushes the batch processor
    assert http_collector.paths and set(http_collector.paths) == {"/v1/traces"}
    spans = http_collector.spans()
    assert {resource["service.name"] for resource, _ in spans} == {"rerankd-test"}
    by_name = {s.name: s for _, s in spans if s.trace_id.hex() == TRACE}
    assert {"rerankd.v1.RerankService/Rerank", "rerankd.local.inference"} <= set(by_name)
    inference = by_name["rerankd.local.inference"]
    assert inference.kind == Span.SPAN_KIND_INTERNAL
    assert _attributes(inference.attributes)["rerankd.pairs"] == len(FRANCE_DOCS)
    attempt = by_name["rerankd.provider_attempt"]  # the embedded model: not a network call
    assert attempt.kind == Span.SPAN_KIND_INTERNAL and "http.request.method" not in _attributes(
        attempt.attributes
    )


def _cohere_settings(url: str) -> dict[str, Any]:
    return {
        "providers": {
            "co": {"kind": "cohere", "base_url": url, "api_key": "k-123", "models": ["rerank-v3.5"]}
        },
        "routes": {
            "hosted": {
                "targets": [{"provider": "co", "model": "rerank-v3.5"}],
                "retry": {"max_attempts": 2, "initial_backoff_s": 0.01},
            }
        },
        "local_enabled": False,
    }


@pytest.mark.parametrize(
    ("variables", "receiver"),
    [
        # OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins over OTEL_EXPORTER_OTLP_PROTOCOL.
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            "grpc",
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_TRACES_EXPORTER": "otlp"}, "http"),
    ],
    ids=["traces-protocol-grpc", "protocol-grpc", "http-protobuf"],
)
async def test_a_trace_over_otlp_has_the_semantic_conventions_and_the_callers_parent(
    variables: dict[str, str],
    receiver: str,
    grpc_collector: Collector,
    http_collector: Collector,
    otel_env: pytest.MonkeyPatch,
) -> None:
    collector = grpc_collector if receiver == "grpc" else http_collector
    for name, value in variables.items():
        otel_env.setenv(name, value)
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,service.namespace=search")
    traceparent = (("traceparent", f"00-{TRACE}-{CALLER_SPAN}-01"),)
    with CohereFake() as fake:
        fake_url = fake.url
        fake.inject(FakeStatus(503, {"message": "busy"}))  # the first attempt fails, the retry answers
        async with running_app(**_cohere_settings(fake.url)) as app, stub_for(app) as stub:
            tracing.setup()
            try:
                request = pb.RerankRequest(
                    model="hosted", query=FRANCE_QUERY, documents=[pb.Document(text=d) for d in FRANCE_DOCS]
                )
                await stub.Rerank(request, metadata=traceparent, timeout=30)
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Rerank(
                        pb.RerankRequest(model="nope", query="q", documents=[pb.Document(text="a")])
                    )
                async with httpx.AsyncClient(base_url=f"http://{app.http_address}", timeout=30) as http:
                    body = {"model": "hosted", "query": FRANCE_QUERY, "documents": FRANCE_DOCS}
                    reply = await http.post("/v2/rerank", json=body, headers=dict(traceparent))
                    assert reply.status_code == 200
                    missing = await http.post("/v2/rerank", json={**body, "model": "nope"})
                    assert missing.status_code == 404
            finally:
                tracing.shutdown()  # flushes the batch processor
    spans = collector.spans()
    other = grpc_collector if collector is http_collector else http_collector
    assert spans and not other.exports, "exported over the wrong protocol"
    resource = spans[0][0]
    assert resource["service.name"] == "rerankd" and resource["service.version"]
    assert resource["deployment.environment.name"] == "test" and resource["service.namespace"] == "search"

    in_trace = [s for _, s in spans if s.trace_id.hex() == TRACE]
    servers = [s for s in in_trace if s.kind == Span.SPAN_KIND_SERVER]
    assert {s.name for s in servers} == {"rerankd.v1.RerankService/Rerank", "POST /v2/rerank"}
    for server in servers:  # the caller's traceparent is the parent of both front doors' spans
        assert server.parent_span_id.hex() == CALLER_SPAN
    grpc_span = next(s for s in servers if s.name.startswith("rerankd."))
    attributes = _attributes(grpc_span.attributes)
    assert {
        k: attributes[k] for k in ("rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code")
    } == {
        "rpc.system": "grpc",
        "rpc.service": "rerankd.v1.RerankService",
        "rpc.method": "Rerank",
        "rpc.grpc.status_code": 0,
    }
    assert (
        attributes["rpc.response.status_code"] == "OK" and grpc_span.status.code != Status.STATUS_CODE_ERROR
    )

    http_span = next(s for s in servers if s.name == "POST /v2/rerank")
    attributes = _attributes(http_span.attributes)
    assert {
        k: attributes[k]
        for k in ("http.request.method", "http.route", "url.scheme", "http.response.status_code")
    } == {
        "http.request.method": "POST",
        "http.route": "/v2/rerank",
        "url.scheme": "http",
        "http.response.status_code": 200,
    }
    assert attributes["url.path"] == "/v2/rerank" and attributes["server.port"] == app.http_port
    assert attributes["network.protocol.version"] == "1.1" and attributes["client.address"] == "127.0.0.1"

    # One CLIENT span per HTTP request to the provider, child of its server span: the HTTP client
    # conventions, the failed one an error with error.type, the retry's resend count.
    for server in servers:
        attempts = [s for s in in_trace if s.parent_span_id == server.span_id]
        assert [s.kind for s in attempts] == [Span.SPAN_KIND_CLIENT] * len(attempts) and attempts
        for attempt in attempts:
            attributes = _attributes(attempt.attributes)
            assert attempt.name == "POST" and attributes["http.request.method"] == "POST"
            assert attributes["server.address"] == "127.0.0.1"
            assert attributes["server.port"] == urllib.parse.urlsplit(fake_url).port
            assert attributes["url.full"] == f"{fake_url}/v2/rerank"
    attempts = sorted(
        (s for s in in_trace if s.parent_span_id == grpc_span.span_id), key=lambda s: s.start_time_unix_nano
    )
    failed, retried = (_attributes(a.attributes) for a in attempts)
    assert failed["http.response.status_code"] == 503 and failed["error.type"] == "503"
    assert attempts[0].status.code == Status.STATUS_CODE_ERROR
    assert retried["http.response.status_code"] == 200 and retried["http.request.resend_count"] == 1
    assert "error.type" not in retried and attempts[1].status.code != Status.STATUS_CODE_ERROR

    # Caller errors are not server errors (status unset), but carry their codes.
    others = [s for _, s in spans if s.trace_id.hex() != TRACE and s.kind == Span.SPAN_KIND_SERVER]
    not_found = {s.name: _attributes(s.attributes) for s in others}
    assert not_found["rerankd.v1.RerankService/Rerank"]["rpc.grpc.status_code"] == 5
    assert not_found["POST /v2/rerank"]["http.response.status_code"] == 404
    assert all(s.status.code != Status.STATUS_CODE_ERROR for s in others)
    assert all("error.type" not in _attributes(s.attributes) for s in others)


def test_rerankd_serve_exports_over_otlp_grpc_and_flushes_on_sigterm(
    grpc_collector: Collector, tmp_path, otel_env: pytest.MonkeyPatch
) -> None:
    """The real process (uvloop, grpc.aio server) with the gRPC exporter's own channel beside it:
    the spans of a call reach the collector by the end of the drain."""
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": grpc_collector.endpoint,
        "OTEL_SERVICE_NAME": "rerankd-process",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",  # nothing leaves before SIGTERM: the drain must flush
    }
    with server_process(env=env, tmp_path=tmp_path) as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.RerankServiceStub(channel)
            request = pb.RerankRequest(
                query=FRANCE_QUERY, documents=[pb.Document(text=d) for d in FRANCE_DOCS]
            )
            stub.Rerank(request, metadata=(("traceparent", f"00-{TRACE}-{CALLER_SPAN}-01"),), timeout=30)
        assert not grpc_collector.exports
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0, server.log()
    spans = grpc_collector.spans()
    assert {resource["service.name"] for resource, _ in spans} == {"rerankd-process"}
    (server_span,) = [s for _, s in spans if s.kind == Span.SPAN_KIND_SERVER]
    assert server_span.name == "rerankd.v1.RerankService/Rerank" and server_span.trace_id.hex() == TRACE
    assert server_span.parent_span_id.hex() == CALLER_SPAN
    assert _attributes(server_span.attributes)["rpc.system"] == "grpc"
    assert "rerankd.local.inference" in {s.name for _, s in spans}
