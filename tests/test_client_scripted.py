"""The sync Python client (rerankd.client.RerankClient) against every way a call ends, with no
server: grpc_testing's scripted channel plays the server's side of each call.

Each test starts the client's call on a thread, takes the call from the scripted channel (what
the client sent), answers it as the server would (metadata, messages, status, trailers) and
checks what the client made of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import grpc
import grpc_testing
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from rerankd import errors
from rerankd.client import RerankClient, call_error, collect_stream
from rerankd.v1 import rerank_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["RerankService"]
RERANK = SERVICE.methods_by_name["Rerank"]
STREAM = SERVICE.methods_by_name["RerankStream"]
IDS = (("x-request-id", "req-7"), ("x-trace-id", "ab" * 16), ("x-span-id", "cd" * 8))


@pytest.fixture
def scripted() -> Iterator[tuple[grpc_testing.Channel, RerankClient]]:
    channel = grpc_testing.channel(
        [pb.DESCRIPTOR.services_by_name["RerankService"]], grpc_testing.strict_real_time()
    )
    client = RerankClient(channel=channel, timeout=5.0)
    yield channel, client


def _in_thread(work: Callable[[], Any]) -> Future[Any]:
    """Run the client's blocking call on a thread; its result (or error) lands in the future."""
    done: Future[Any] = Future()

    def run() -> None:
        try:
            done.set_result(work())
        except BaseException as exc:  # the client's error is what the test checks
            done.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return done


def _error_status(err: errors.RerankError, request_id: str) -> grpc.Status:
    return errors.to_status(err, request_id)


def test_an_answer_carries_ids_from_both_metadata(
    scripted: tuple[grpc_testing.Channel, RerankClient],
) -> None:
    channel, client = scripted
    reply = _in_thread(lambda: client.rerank("capital?", ["Berlin", "Paris"], request_id="req-7"))
    metadata, request, rpc = channel.take_unary_unary(RERANK)
    assert ("x-request-id", "req-7") in metadata and [d.text for d in request.documents] == [
        "Berlin",
        "Paris",
    ]
    rpc.send_initial_metadata(IDS)
    answer = pb.RerankResponse(id="req-7", results=[pb.RerankResult(index=1, relevance_score=0.9)])
    rpc.terminate(answer, (("x-provider", "local"), ("x-attempts", "1")), grpc.StatusCode.OK, "")
    result = reply.result(timeout=5)
    assert result.indices == [1] and result.request_id == "req-7"
    assert result.trace_id == "ab" * 16
    assert result.headers["x-provider"] == "local" and result.headers["x-attempts"] == "1"


def test_an_error_is_decoded_with_its_details_and_the_ids_of_its_trailers(
    scripted: tuple[grpc_testing.Channel, RerankClient],
) -> None:
    channel, client = scripted
    reply = _in_thread(lambda: client.rerank("capital?", ["Berlin"], model="nope"))
    _, _, rpc = channel.take_unary_unary(RERANK)
    err = errors.NotFound(
        "model 'nope' is not served here", field_violations=[("model", "unknown model 'nope'")]
    )
    status = _error_status(err, "req-7")
    rpc.terminate(None, (*status.trailing_metadata, *IDS[:2]), status.code, status.details)
    with pytest.raises(grpc.RpcError) as caught:
        reply.result(timeout=5)
    decoded = call_error(caught.value)
    assert decoded.code is grpc.StatusCode.NOT_FOUND and "nope" in decoded.message
    assert decoded.request_id == "req-7" and decoded.trace_id == "ab" * 16
    assert decoded.reason == "MODEL_NOT_FOUND" and decoded.fields == {"model": "unknown model 'nope'"}
    assert decoded.retryable is False and decoded.retry_after is None


def test_a_retryable_error_says_how_long_to_wait(scripted: tuple[grpc_testing.Channel, RerankClient]) -> None:
    channel, client = scripted
    reply = _in_thread(lambda: client.rerank("q", ["d"]))
    _, _, rpc = channel.take_unary_unary(RERANK)
    status = _error_status(errors.ResourceExhausted("slow down", retry_after=1.5, provider="cohere"), "r")
    rpc.terminate(None, status.trailing_metadata, status.code, status.details)
    with pytest.raises(grpc.RpcError) as caught:
        reply.result(timeout=5)
    decoded = call_error(caught.value)
    assert decoded.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert decoded.retry_after == pytest.approx(1.5) and decoded.retryable and decoded.provider == "cohere"
    assert decoded.request_id == "r"  # from ErrorInfo when the trailers carry none


def test_a_deadline_is_surfaced_as_deadline_exceeded(
    scripted: tuple[grpc_testing.Channel, RerankClient],
) -> None:
    channel, client = scripted
    reply = _in_thread(lambda: client.rerank("q", ["d"], timeout=0.2))
    _, _, rpc = channel.take_unary_unary(RERANK)
    rpc.terminate(None, IDS[:2], grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    with pytest.raises(grpc.RpcError) as caught:
        reply.result(timeout=5)
    decoded = call_error(caught.value)
    assert decoded.code is grpc.StatusCode.DEADLINE_EXCEEDED and decoded.request_id == "req-7"


def test_a_status_without_rich_details_still_decodes(
    scripted: tuple[grpc_testing.Channel, RerankClient],
) -> None:
    channel, client = scripted
    reply = _in_thread(lambda: client.rerank("q", ["d"]))
    _, _, rpc = channel.take_unary_unary(RERANK)
    rpc.terminate(None, (), grpc.StatusCode.UNAVAILABLE, "connection reset")
    with pytest.raises(grpc.RpcError) as caught:
        reply.result(timeout=5)
    decoded = call_error(caught.value)
    assert (decoded.code, decoded.message, decoded.request_id, decoded.fields) == (
        grpc.StatusCode.UNAVAILABLE,
        "connection reset",
        "",
        {},
    )


def test_details_that_contradict_the_status_line_are_not_trusted(
    scripted: tuple[grpc_testing.Channel, RerankClient],
) -> None:
    channel, client = scripted
    reply = _in_thread(lambda: client.rerank("q", ["d"]))
    _, _, rpc = channel.take_unary_unary(RERANK)
    bad = error_details_pb2.BadRequest(field_violations=[{"field": "query", "description": "empty"}])
    detail = status_pb2.Status(code=code_pb2.NOT_FOUND, message="other")
    detail.details.add().Pack(bad)
    contradicting = rpc_status.to_status(detail).trailing_metadata
    rpc.terminate(None, contradicting, grpc.StatusCode.INVALID_ARGUMENT, "query: empty")
    with pytest.raises(grpc.RpcError) as caught:
        reply.result(timeout=5)
    decoded = call_error(caught.value)
    assert decoded.code is grpc.StatusCode.INVALID_ARGUMENT and decoded.fields == {}


def test_a_stream_is_folded_and_a_stream_read_halfway_is_cancelled(
    scripted: tuple[grpc_testing.Channel, RerankClient],
) -> None:
    channel, client = scripted
    whole = _in_thread(lambda: collect_stream(client.rerank_stream("q", ["a", "b"])))
    _, request, rpc = channel.take_unary_stream(STREAM)
    assert [d.text for d in request.request.documents] == ["a", "b"]
    rpc.send_initial_metadata(IDS)
    rpc.send_response(pb.RerankStreamResponse(header=pb.RerankStreamHeader(id="req-7", total_results=2)))
    results = [pb.RerankResult(index=1, relevance_score=0.8), pb.RerankResult(index=0, relevance_score=0.1)]
    rpc.send_response(pb.RerankStreamResponse(results=pb.RerankStreamResults(results=results)))
    rpc.send_response(pb.RerankStreamResponse(summary=pb.RerankStreamSummary(provider="local")))
    rpc.terminate((), grpc.StatusCode.OK, "")
    folded = whole.result(timeout=5)
    assert folded.indices == [1, 0] and folded.header.id == "req-7" and folded.summary.provider == "local"

    def first_only() -> pb.RerankStreamResponse:
        stream = client.rerank_stream("q", ["a", "b"])
        first = next(stream)
        stream.close()  # the caller stops reading: the client cancels the call
        return first

    early = _in_thread(first_only)
    _, _, rpc = channel.take_unary_stream(STREAM)
    rpc.send_response(pb.RerankStreamResponse(header=pb.RerankStreamHeader(id="req-8")))
    assert early.result(timeout=5).header.id == "req-8"
    _in_thread(rpc.cancelled).result(timeout=5)  # returns once the call is CANCELLED, raises on another code


def test_a_stream_that_fails_midway_raises_with_its_status(
    scripted: tuple[grpc_testing.Channel, RerankClient],
) -> None:
    channel, client = scripted
    seen: list[pb.RerankStreamResponse] = []
    header_read = threading.Event()

    def read() -> None:
        for message in client.rerank_stream("q", ["a"]):
            seen.append(message)
            header_read.set()

    done = _in_thread(read)
    _, _, rpc = channel.take_unary_stream(STREAM)
    rpc.send_response(pb.RerankStreamResponse(header=pb.RerankStreamHeader(id="req-9")))
    assert header_read.wait(5)
    status = _error_status(errors.Unavailable("every target failed", provider="cohere"), "req-9")
    rpc.terminate((*status.trailing_metadata, *IDS[:2]), status.code, status.details)
    with pytest.raises(grpc.RpcError) as caught:
        done.result(timeout=5)
    decoded = call_error(caught.value)
    assert len(seen) == 1 and decoded.code is grpc.StatusCode.UNAVAILABLE and decoded.provider == "cohere"
    assert decoded.request_id == "req-7"  # the trailer's id wins over ErrorInfo's
