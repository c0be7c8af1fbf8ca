"""Hostile input against the live server (a real `rerankd serve` process): hypothesis-generated
RerankRequests and raw malformed bytes, per message and on the TCP connection itself.

Every answer is OK or a documented status, never INTERNAL or UNKNOWN; the health service is still
SERVING afterwards, and the server logged no error. The server scores with the embedded model
(alias "default": odd unicode goes through the real tokenizer) and a loopback fake Cohere
("co/...": it goes through JSON encoding to a provider).

Bounded: RERANKD_FUZZ_EXAMPLES cases per test (default 120, derandomized so `make test` is
repeatable); `make fuzz` runs thousands with fresh randomness.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rerankd.v1 import rerank_pb2 as pb

from tests.fakes.cohere import CohereFake
from tests.support import log_records, server_process

EXAMPLES = int(os.environ.get("RERANKD_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="RERANKD_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The codes a caller may see (errors.py); INTERNAL and UNKNOWN mean a bug.
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
METHODS = {
    "Rerank": ("/rerankd.v1.RerankService/Rerank", False),
    "RerankStream": ("/rerankd.v1.RerankService/RerankStream", True),
    "ListModels": ("/rerankd.v1.RerankService/ListModels", False),
    "Check": ("/grpc.health.v1.Health/Check", False),
}

# -- strategies -----------------------------------------------------------------------------------

_ODD = [
    "",
    " ",
    "\x00",
    "\u200b",
    "\ufeff",
    "NaN",
    "nan",
    "-Infinity",
    "1e309",
    "null",
    "None",
    "undefined",
    "[]",
    "{}",
    "\u202e\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "\U0001f600" * 3,
    "a\u0301" * 5,
    "\r\n\t",
    "%s%n",
    "' OR 1=1 --",
    "../../etc/passwd",
    "x" * 70_000,  # over the 64 KiB document cap
]
_text = st.one_of(
    st.sampled_from(_ODD),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),  # proto strings: no lone surrogates
)
_short = st.one_of(st.sampled_from(["", "id", "dup", "text", "a", "b", "NaN"]), st.text(max_size=8))
_documents = st.lists(
    st.builds(
        pb.Document,
        id=_short,
        text=_text,
        fields=st.dictionaries(_short, _text, max_size=3),
    ),
    max_size=6,
)
_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**60), 2**60),
        _text,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_short, inner, max_size=3)),
    max_leaves=12,
)


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"k": value}
    return value


@st.composite
def _parameters(draw: st.DrawFn) -> struct_pb2.Struct | None:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return None
    struct = struct_pb2.Struct()
    if choice == 1:
        struct.update(draw(st.dictionaries(_short, _json, max_size=4)))
    elif choice == 2:
        struct.update(_deep(draw(st.integers(1, 30))))  # past max_parameters_depth, within protobuf's limit
    else:
        struct.update({"nan": math.nan, "inf": -math.inf, "big": 1e308})
    return struct


@st.composite
def rerank_requests(draw: st.DrawFn) -> pb.RerankRequest:
    request = pb.RerankRequest(
        model=draw(st.one_of(st.sampled_from(["", "default", "co/rerank-v3.5", "co", "nope/x"]), _text)),
        query=draw(_text),
        documents=draw(_documents),
        top_n=draw(st.one_of(st.just(0), st.integers(0, 10), st.just(2**32 - 1))),
        return_documents=draw(st.booleans()),
        rank_fields=draw(st.lists(_short, max_size=3)),
        truncation=draw(st.sampled_from([0, 1, 2, 7])),  # 7: an enum value the contract lacks
        max_tokens_per_doc=draw(st.one_of(st.just(0), st.integers(0, 600), st.just(2**32 - 1))),
        metadata=draw(st.dictionaries(_short, _text, max_size=4)),
        request_id=draw(st.one_of(st.just(""), _text)),
        trace=pb.TraceContext(
            trace_id=draw(st.one_of(st.just(""), _short, st.just("0" * 32))),
            span_id=draw(_short),
            span_name=draw(_text),
            tracestate=draw(_text),
        ),
    )
    parameters = draw(_parameters())
    if parameters is not None:
        request.parameters.CopyFrom(parameters)
    return request


# -- the live server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A `rerankd serve` process with the embedded model and a fake Cohere; (address, log path)."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    with CohereFake() as fake:
        config = tmp_path / "rerankd.yaml"
        provider = {"kind": "cohere", "base_url": fake.url, "api_key": "fuzz-key-0123456789abcdef"}
        config.write_text(yaml.safe_dump({"providers": {"co": provider}}))
        with server_process("--config", str(config), "--no-http", tmp_path=tmp_path) as server:
            yield server.address, server.log_path
            _assert_healthy(server.address)
        log = server.log()
    records = log_records(log)
    assert records, "the server wrote no log lines"
    bad = [record for record in records if record.get("level") in ("ERROR", "CRITICAL")]
    assert not bad, bad[:5]


@pytest.fixture(scope="module")
def channel(live: tuple[str, Path]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(live[0]) as opened:
        yield opened


def _assert_healthy(address: str) -> None:
    with grpc.insecure_channel(address) as fresh:
        reply = health_pb2_grpc.HealthStub(fresh).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _code(call: Any) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


# -- properties ---------------------------------------------------------------------------------


@FUZZ
@given(request=rerank_requests())
def test_generated_requests_get_ok_or_a_documented_status(
    channel: grpc.Channel, request: pb.RerankRequest
) -> None:
    rerank = channel.unary_unary(
        "/rerankd.v1.RerankService/Rerank",
        request_serializer=pb.RerankRequest.SerializeToString,
        response_deserializer=pb.RerankResponse.FromString,
    )
    try:
        reply = rerank(request, timeout=20)
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        assert code in DOCUMENTED, (code, exc.details())  # type: ignore[attr-defined]
        return
    indices = [r.index for r in reply.results]
    assert len(set(indices)) == len(indices) and all(0 <= i < len(request.documents) for i in indices)
    scores = [r.relevance_score for r in reply.results]
    assert scores == sorted(scores, reverse=True) and all(math.isfinite(s) for s in scores)
    if request.top_n:
        assert len(indices) <= request.top_n


@FUZZ
@given(request=rerank_requests(), per_message=st.integers(0, 3), progressive=st.booleans())
def test_generated_stream_requests_get_ok_or_a_documented_status(
    channel: grpc.Channel, request: pb.RerankRequest, per_message: int, progressive: bool
) -> None:
    stream = channel.unary_stream(
        "/rerankd.v1.RerankService/RerankStream",
        request_serializer=pb.RerankStreamRequest.SerializeToString,
        response_deserializer=pb.RerankStreamResponse.FromString,
    )
    wrapped = pb.RerankStreamRequest(
        request=request, progressive=progressive, results_per_message=per_message
    )
    code = _code(lambda: list(stream(wrapped, timeout=20)))
    assert code in DOCUMENTED, code


@FUZZ
@given(method=st.sampled_from(sorted(METHODS)), raw=st.binary(max_size=300))
def test_raw_bytes_get_ok_or_a_documented_status(channel: grpc.Channel, method: str, raw: bytes) -> None:
    path, streaming = METHODS[method]
    if streaming:
        stream = channel.unary_stream(path)
        code = _code(lambda: list(stream(raw, timeout=20)))
    else:
        code = _code(lambda: channel.unary_unary(path)(raw, timeout=20))
    assert code in DOCUMENTED, (method, code)


@FUZZ
@given(
    messages=st.lists(
        st.one_of(
            st.binary(max_size=120),
            rerank_requests().map(lambda r: pb.RerankBatchRequest(request=r).SerializeToString()),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_batch_streams_of_raw_and_generated_messages(channel: grpc.Channel, messages: list[bytes]) -> None:
    batch = channel.stream_stream("/rerankd.v1.RerankService/RerankBatch")
    code = _code(lambda: list(batch(iter(messages), timeout=20)))
    assert code in DOCUMENTED, code


@settings(FUZZ, max_examples=max(EXAMPLES // 4, 10))
@given(
    garbage=st.one_of(
        st.binary(min_size=1, max_size=200),
        st.sampled_from(
            [
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface, then nothing
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00"
                + b"\xff" * 18,  # bad SETTINGS
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on a plaintext port
            ]
        ),
    )
)
def test_garbage_on_the_connection_leaves_the_server_serving(live: tuple[str, Path], garbage: bytes) -> None:
    host, port = live[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(garbage)
        sock.settimeout(0.2)
        with contextlib.suppress(TimeoutError, ConnectionError):
            sock.recv(1024)


def test_health_is_serving_after_the_fuzzing(live: tuple[str, Path]) -> None:
    _assert_healthy(live[0])
