"""Traces, metrics and logs end to end: spans in the caller's trace down to the provider's
traceparent, ids back in the response and metadata, /metrics moving, and no secret or text in logs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from rerankd import tracing
from rerankd.logs import JsonFormatter
from rerankd.v1 import rerank_pb2 as pb

from tests.conftest import running_app, stub_for
from tests.examples import FRANCE_DOCS, FRANCE_QUERY
from tests.fakes.base import Status
from tests.fakes.cohere import CohereFake
from tests.support import log_messages, log_records

_RERANK_CALLS = 'rerankd_calls_total{method="rerankd.v1.RerankService/Rerank",'

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CANARY_KEY = "co-canary-key-5f1e2d3c4b5a69788796"
CANARY_TEXT = "canary-document-text-zq81"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.setup(exporter=exporter)
    yield exporter
    tracing.setup()


def _cohere_settings(url: str, **options: object) -> dict[str, object]:
    return {
        "providers": {
            "cohere": {
                "kind": "cohere",
                "base_url": url,
                "api_key": CANARY_KEY,
                "models": ["rerank-v3.5"],
                "forward_metadata": ["team"],
                **options,
            }
        },
        "routes": {
            "hosted": {
                "targets": [{"provider": "cohere", "model": "rerank-v3.5"}],
                "retry": {"max_attempts": 1},
            },
            "retrying": {
                "targets": [{"provider": "cohere", "model": "rerank-v3.5"}],
            },
        },
    }


def _request(query: str = FRANCE_QUERY, **kwargs: object) -> pb.RerankRequest:
    return pb.RerankRequest(query=query, documents=[pb.Document(text=d) for d in FRANCE_DOCS], **kwargs)


async def test_one_call_one_trace_from_caller_to_provider(spans: InMemorySpanExporter) -> None:
    with CohereFake() as fake:
        async with running_app(**_cohere_settings(fake.url)) as app, stub_for(app) as stub:
            call = stub.Rerank(
                _request(model="hosted", metadata={"team": "search", "secret-note": "internal"}),
                metadata=(("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"), ("x-request-id", "rq-7")),
                timeout=10,
            )
            reply = await call
            initial, trailing = dict(await call.initial_metadata()), dict(await call.trailing_metadata())
    finished = {span.name: span for span in spans.get_finished_spans()}
    server = next(s for s in finished.values() if s.kind == SpanKind.SERVER)
    attempt = next(s for s in finished.values() if s.kind == SpanKind.CLIENT)
    assert format(server.context.trace_id, "032x") == CALLER_TRACE
    assert format(server.parent.span_id, "016x") == CALLER_SPAN
    assert attempt.parent.span_id == server.context.span_id
    assert attempt.attributes["rerankd.provider"] == "cohere"
    assert attempt.attributes["rerankd.attempt"] == 1 and attempt.attributes["rerankd.outcome"] == "OK"
    assert attempt.attributes["rerankd.documents"] == len(FRANCE_DOCS)
    sent = fake.requests[-1].headers
    assert sent["traceparent"] == f"00-{CALLER_TRACE}-{format(attempt.context.span_id, '016x')}-01"
    assert sent["x-request-id"] == "rq-7"
    assert json.loads(sent["x-metadata"]) == {"team": "search"}  # only the allow-listed key
    assert reply.trace.trace_id == CALLER_TRACE and reply.trace.parent_span_id == CALLER_SPAN
    assert reply.trace.span_id == format(server.context.span_id, "016x")
    assert initial["x-trace-id"] == CALLER_TRACE and initial["x-request-id"] == "rq-7"
    assert trailing["x-provider"] == "cohere" and trailing["x-attempts"] == "1"


async def test_retries_get_one_span_each(spans: InMemorySpanExporter) -> None:
    with CohereFake() as fake:
        fake.inject(Status(503, {"message": "busy"}))
        settings = _cohere_settings(fake.url)
        settings["routes"]["retrying"]["retry"] = {"max_attempts": 3, "initial_backoff_s": 0.01}  # type: ignore[index]
        async with running_app(**settings) as app, stub_for(app) as stub:
            await stub.Rerank(_request(model="retrying"), timeout=10)
    attempts = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert [a.attributes["rerankd.outcome"] for a in attempts] == ["UNAVAILABLE", "OK"]
    assert [a.attributes["rerankd.attempt"] for a in attempts] == [1, 2]


async def test_local_inference_span(spans: InMemorySpanExporter, local_app) -> None:
    async with stub_for(local_app) as stub:
        await stub.Rerank(_request(), timeout=30)
    inference = [s for s in spans.get_finished_spans() if s.name == "rerankd.local.inference"]
    assert inference and inference[-1].attributes["rerankd.pairs"] == len(FRANCE_DOCS)
    assert inference[-1].attributes["rerankd.tokens"] > 0


async def test_x_headers_and_portkey_aliases(stub) -> None:
    for prefix in ("x-", "x-portkey-"):
        call = stub.Rerank(
            _request(),
            metadata=(
                (f"{prefix}trace-id", CALLER_TRACE),
                (f"{prefix}span-id", CALLER_SPAN),
                ("x-request-id", "r1"),
            ),
            timeout=30,
        )
        reply = await call
        assert reply.trace.trace_id == CALLER_TRACE and reply.trace.parent_span_id == CALLER_SPAN


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ((("x-metadata", "{not json"),), "x-metadata"),
        ((("x-metadata", '["a list"]'),), "x-metadata"),
        ((("x-metadata", json.dumps({f"k{i}": "v" for i in range(200)})),), "metadata"),
    ],
)
async def test_bad_metadata_is_invalid_argument(
    stub, metadata: tuple[tuple[str, str], ...], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Rerank(_request(), metadata=metadata, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()


async def test_stream_sends_ids_in_initial_and_trailing_metadata(stub) -> None:
    call = stub.RerankStream(
        pb.RerankStreamRequest(request=_request()), metadata=(("x-request-id", "s-1"),), timeout=30
    )
    messages = [m async for m in call]
    initial, trailing = dict(await call.initial_metadata()), dict(await call.trailing_metadata())
    assert messages[0].header.id == "s-1" and initial["x-request-id"] == "s-1"
    assert trailing["x-provider"] == "local" and trailing["x-attempts"] == "1"
    assert trailing["x-trace-id"] == messages[0].header.trace.trace_id


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def _value(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


async def test_metrics_move_after_calls() -> None:
    with CohereFake() as fake:
        fake.inject(Status(503, {"message": "busy"}))
        settings = _cohere_settings(fake.url)
        settings["routes"]["retrying"]["retry"] = {"max_attempts": 3, "initial_backoff_s": 0.01}  # type: ignore[index]
        async with (
            running_app(**settings, metrics_enabled=True, metrics_port=0) as app,
            stub_for(app) as stub,
        ):
            assert app.metrics_port
            before = _scrape(app.metrics_port)
            await stub.Rerank(_request(model="retrying"), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Rerank(_request(model="nope"), timeout=10)
            after = _scrape(app.metrics_port)
    ok = _RERANK_CALLS + 'model="retrying",provider="cohere",status="OK"}'
    assert _value(after, ok) == _value(before, ok) + 1
    missing = _RERANK_CALLS + 'model="unknown",provider="",status="NOT_FOUND"}'
    assert _value(after, missing) >= _value(before, missing) + 1
    assert _value(after, 'rerankd_retries_total{provider="cohere"}') >= 1
    assert (
        _value(
            after,
            'rerankd_provider_attempts_total{model="rerank-v3.5",outcome="UNAVAILABLE",provider="cohere"}',
        )
        >= 1
    )
    assert "rerankd_call_duration_seconds_bucket" in after and "rerankd_in_flight_calls" in after
    assert _value(after, 'rerankd_documents_scored_total{provider="cohere"}') >= len(FRANCE_DOCS)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _captured_logs(level: int) -> Iterator[_Capture]:
    """Every log line (as rerankd formats it) at `level` and above while the block runs."""
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    old_level = root.level
    root.setLevel(level)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)


async def test_logs_hold_no_key_and_no_text(monkeypatch: pytest.MonkeyPatch) -> None:
    with _captured_logs(logging.DEBUG) as capture, CohereFake() as fake:
        fake.inject(
            Status(401, {"message": f"invalid api token {CANARY_KEY}"}),
            Status(500, {"message": CANARY_TEXT}),
        )
        async with running_app(**_cohere_settings(fake.url)) as app, stub_for(app) as stub:
            for _ in range(2):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Rerank(_request(model="hosted", query=CANARY_TEXT), timeout=10)
                assert CANARY_KEY not in caught.value.details()
            reply = await stub.Rerank(
                pb.RerankRequest(
                    model="hosted", query=CANARY_TEXT, documents=[pb.Document(text=CANARY_TEXT)]
                ),
                timeout=10,
            )
            assert reply.results
    records = log_records("\n".join(capture.lines))
    access = [record for record in records if record["logger"] == "rerankd.access"]
    assert len(access) >= 3
    assert {"trace_id", "request_id", "model", "provider", "documents", "latency_ms", "status"} <= set(
        access[-1]
    )
    for line in capture.lines:
        assert CANARY_KEY not in line and CANARY_TEXT not in line


async def test_access_lines_can_be_turned_off_and_metrics_still_count() -> None:
    with _captured_logs(logging.INFO) as capture, CohereFake() as fake:
        settings = _cohere_settings(fake.url)
        async with (
            running_app(**settings, access_log_enabled=False, metrics_enabled=True, metrics_port=0) as app,
            stub_for(app) as stub,
        ):
            before = _scrape(app.metrics_port)
            await stub.Rerank(_request(model="hosted"), timeout=10)
            after = _scrape(app.metrics_port)
    messages = log_messages("\n".join(capture.lines))
    assert "call" not in messages
    assert "serving" in messages  # other lines are unaffected
    ok = _RERANK_CALLS + 'model="hosted",provider="cohere",status="OK"}'
    assert _value(after, ok) == _value(before, ok) + 1


async def test_a_provider_that_cannot_be_reached_names_the_failure_on_its_attempt_span(
    spans: InMemorySpanExporter,
) -> None:
    import socket

    with socket.socket() as closed:  # a port nothing listens on once this block has bound and left it
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    async with running_app(**_cohere_settings(url), local_enabled=False) as app, stub_for(app) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Rerank(_request(model="hosted"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    (attempt,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert attempt.name == "POST" and attempt.attributes["url.full"] == f"{url}/v2/rerank"
    assert attempt.attributes["error.type"] == "httpx.ConnectError"
    assert "http.response.status_code" not in attempt.attributes  # no answer came
    assert attempt.status.status_code is StatusCode.ERROR
    (server,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.attributes["error.type"] == "UNAVAILABLE" and server.status.status_code is StatusCode.ERROR


def test_a_failing_child_span_gets_the_errors_code_as_error_type(spans: InMemorySpanExporter) -> None:
    from rerankd import errors

    with pytest.raises(errors.Internal), tracing.child_span("rerankd.local.inference", {"rerankd.pairs": 1}):
        raise errors.Internal("local: the model failed")
    (inference,) = spans.get_finished_spans()
    assert (
        inference.attributes["error.type"] == "INTERNAL" and inference.status.status_code is StatusCode.ERROR
    )


async def test_an_attempt_split_into_several_requests_has_one_http_span_per_request(
    spans: InMemorySpanExporter,
) -> None:
    """Passages past a provider's batch: one attempt sends several HTTP requests; each has one span
    with the HTTP client conventions (the attempt's own, then CLIENT spans under it)."""
    from tests.fakes.tei import API_KEY, TeiFake

    options = {"max_client_batch_size": 4, "max_input_length": 200, "passages": {"tokens": 128, "stride": 32}}
    provider = {"kind": "tei", "api_key": API_KEY, "models": ["long"], "options": options}
    with TeiFake(max_client_batch_size=4, max_input_length=200) as fake:
        providers = {"tei": {**provider, "base_url": fake.url}}
        async with running_app(providers=providers, local_enabled=False) as app, stub_for(app) as stub:
            texts = [f"town {i} is a capital" for i in range(10)]
            request = pb.RerankRequest(
                model="long", query="capital", documents=[pb.Document(text=t) for t in texts]
            )
            await stub.Rerank(request, timeout=30)
        sent = len(fake.requests)
    assert sent == 3  # 10 documents in batches of 4
    finished = spans.get_finished_spans()
    (attempt,) = [
        s for s in finished if s.kind == SpanKind.CLIENT and s.attributes.get("rerankd.attempt") == 1
    ]
    requests = [s for s in finished if "http.request.method" in s.attributes]
    assert len(requests) == sent and all(s.attributes["http.response.status_code"] == 200 for s in requests)
    assert attempt in requests and all(s.kind == SpanKind.CLIENT and s.name == "POST" for s in requests)
    assert {s.parent.span_id for s in requests if s is not attempt} == {attempt.context.span_id}
