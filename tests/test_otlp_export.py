"""With OTEL_EXPORTER_OTLP_ENDPOINT set, spans reach an OTLP/HTTP collector (a loopback fake)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from rerankd import tracing
from rerankd.v1 import rerank_pb2 as pb

from tests.examples import FRANCE_DOCS, FRANCE_QUERY

TRACE = "5bf92f3577b34da6a3ce929d0e0e4737"


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


async def test_spans_are_exported_over_otlp_http(
    collector: tuple[str, list[tuple[str, bytes]]], monkeypatch: pytest.MonkeyPatch, stub
) -> None:
    url, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "rerankd-test")
    tracing.setup()
    try:
        request = pb.RerankRequest(query=FRANCE_QUERY, documents=[pb.Document(text=d) for d in FRANCE_DOCS])
        await stub.Rerank(request, metadata=(("traceparent", f"00-{TRACE}-00f067aa0ba902b7-01"),), timeout=30)
    finally:
        tracing.shutdown()  # flushes the batch processor
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        tracing.setup()
    assert received and all(path == "/v1/traces" for path, _ in received)
    spans = []
    for _, body in received:
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert attributes["service.name"] == "rerankd-test"
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    names = {s.name for s in spans if s.trace_id.hex() == TRACE}
    assert {"rerankd.v1.RerankService/Rerank", "rerankd.local.inference"} <= names
