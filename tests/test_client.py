"""rerankd.client against a live `rerankd serve`, and its retries and deadlines against a scripted fake."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from rerankd.client import (
    SERVICE_CONFIG,
    AsyncRerankClient,
    RerankClient,
    collect_stream,
    make_traceparent,
    new_trace_id,
    parse_traceparent,
)
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc

from tests.examples import FRANCE_BEST as BEST
from tests.examples import FRANCE_DOCS as DOCS
from tests.examples import FRANCE_QUERY as QUERY
from tests.support import ROOT, server_process


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process(tmp_path=tmp_path_factory.mktemp("client")) as server:
        yield server.address


@pytest.fixture(scope="module")
def client(address: str) -> Iterator[RerankClient]:
    with RerankClient(address, timeout=30) as rerank_client:
        yield rerank_client


def test_rerank_ranks_paris_first_and_returns_the_callers_trace(client: RerankClient) -> None:
    traceparent = make_traceparent()
    trace_id, caller_span = parse_traceparent(traceparent) or ("", "")
    reply = client.rerank(QUERY, DOCS, traceparent=traceparent, request_id="client-test-1")
    assert reply.indices[0] == BEST
    assert sorted(reply.indices) == [0, 1, 2]
    assert reply.response.trace.trace_id == trace_id
    assert reply.response.trace.parent_span_id == caller_span
    assert reply.headers["x-trace-id"] == trace_id
    assert reply.trace_id == trace_id
    assert reply.request_id == "client-test-1"
    assert reply.headers["x-request-id"] == "client-test-1"


def test_rerank_options_reach_the_server(client: RerankClient) -> None:
    trace_id = new_trace_id()
    reply = client.rerank(
        QUERY,
        [pb.Document(id="de", text=DOCS[0]), pb.Document(id="fr", text=DOCS[1])],
        model="default",
        top_n=1,
        return_documents=True,
        trace=pb.TraceContext(trace_id=trace_id),
        metadata={"team": "search"},
    )
    assert [(r.index, r.document.id, r.document.text) for r in reply.results] == [(1, "fr", DOCS[1])]
    assert reply.trace_id == trace_id


def test_rerank_stream_matches_unary(client: RerankClient) -> None:
    traceparent = make_traceparent()
    unary = client.rerank(QUERY, DOCS)
    streamed = client.rerank_stream_collect(QUERY, DOCS, traceparent=traceparent, results_per_message=1)
    assert streamed.indices == unary.indices
    assert streamed.trace_id == traceparent.split("-")[1]
    assert streamed.header.total_results == 3
    assert streamed.summary.usage.documents == 3
    assert streamed.messages == 5  # header, three messages of one result, summary


def test_list_models_and_health(client: RerankClient) -> None:
    names = {model.name for model in client.list_models().models}
    assert {"default", "ms-marco-MiniLM-L-12-v2"} <= names
    assert client.health() == "SERVING"


def test_bad_request_raises_invalid_argument(client: RerankClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.rerank("   ", DOCS)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_malformed_traceparent_is_refused_before_sending(client: RerankClient) -> None:
    with pytest.raises(ValueError, match="traceparent"):
        client.rerank(QUERY, DOCS, traceparent="00-nothex-01")


async def test_async_client(address: str) -> None:
    traceparent = make_traceparent()
    async with AsyncRerankClient(address) as aclient:
        reply = await aclient.rerank(QUERY, DOCS, traceparent=traceparent, request_id="async-1")
        streamed = await aclient.rerank_stream_collect(QUERY, DOCS, traceparent=traceparent)
        models = await aclient.list_models()
        status = await aclient.health()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await aclient.rerank(QUERY, [])
    assert reply.indices[0] == BEST
    assert reply.headers["x-trace-id"] == reply.trace_id == traceparent.split("-")[1]
    assert reply.request_id == "async-1"
    assert streamed.indices == reply.indices
    assert streamed.trace_id == reply.trace_id
    assert "default" in {model.name for model in models.models}
    assert status == "SERVING"
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_make_traceparent() -> None:
    value = make_traceparent("0AF7651916CD43DD8448EB211C80319C", "b7ad6b7169203331", sampled=False)
    assert value == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    generated = parse_traceparent(make_traceparent())
    assert generated is not None and len(generated[0]) == 32 and len(generated[1]) == 16
    with pytest.raises(ValueError):
        make_traceparent("ABC")


def test_collect_stream_leaves_out_partial_results() -> None:
    result = pb.RerankResult
    messages = [
        pb.RerankStreamResponse(header=pb.RerankStreamHeader(id="r1", total_results=2)),
        pb.RerankStreamResponse(results=pb.RerankStreamResults(results=[result(index=7)], partial=True)),
        pb.RerankStreamResponse(results=pb.RerankStreamResults(results=[result(index=1), result(index=0)])),
        pb.RerankStreamResponse(summary=pb.RerankStreamSummary(usage=pb.Usage(documents=2))),
    ]
    reply = collect_stream(messages)
    assert reply.indices == [1, 0]
    assert reply.header.id == "r1"
    assert reply.summary.usage.documents == 2
    assert reply.messages == 4


class _Scripted(rerank_pb2_grpc.RerankServiceServicer):
    """Fails the first `failures` attempts of each call with `code`; answers with what it saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures = 0
        self.code = grpc.StatusCode.UNAVAILABLE
        self.attempts = 0
        self.previous_attempts: list[str] = []

    def script(self, failures: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        with self.lock:
            self.failures, self.code, self.attempts, self.previous_attempts = failures, code, 0, []

    def Rerank(self, request: pb.RerankRequest, context: grpc.ServicerContext) -> pb.RerankResponse:
        with self.lock:
            self.attempts += 1
            metadata = dict(context.invocation_metadata())
            self.previous_attempts.append(str(metadata.get("grpc-previous-rpc-attempts", "0")))
            fail = self.attempts <= self.failures
        if fail:
            context.abort(self.code, f"scripted failure {self.attempts}")
        remaining = context.time_remaining()
        return pb.RerankResponse(id=f"{remaining:.3f}" if remaining is not None else "none")


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[str, _Scripted]]:
    servicer = _Scripted()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rerank_pb2_grpc.add_RerankServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


def test_unavailable_is_retried_by_the_service_config(scripted: tuple[str, _Scripted]) -> None:
    address, servicer = scripted
    servicer.script(failures=2)
    with RerankClient(address, timeout=10) as rerank_client:
        rerank_client.rerank(QUERY, DOCS)
    assert servicer.attempts == 3
    assert servicer.previous_attempts == ["0", "1", "2"]


def test_retries_stop_after_max_attempts(scripted: tuple[str, _Scripted]) -> None:
    address, servicer = scripted
    servicer.script(failures=10)
    with RerankClient(address, timeout=10) as rerank_client, pytest.raises(grpc.RpcError) as caught:
        rerank_client.rerank(QUERY, DOCS)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts == SERVICE_CONFIG["methodConfig"][0]["retryPolicy"]["maxAttempts"] == 4


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_other_codes_are_not_retried(scripted: tuple[str, _Scripted], code: grpc.StatusCode) -> None:
    address, servicer = scripted
    servicer.script(failures=1, code=code)
    with RerankClient(address, timeout=10) as rerank_client, pytest.raises(grpc.RpcError) as caught:
        rerank_client.rerank(QUERY, DOCS)
    assert caught.value.code() == code
    assert servicer.attempts == 1


def test_retries_can_be_turned_off(scripted: tuple[str, _Scripted]) -> None:
    address, servicer = scripted
    servicer.script(failures=1)
    with RerankClient(address, timeout=10, retries=False) as rerank_client, pytest.raises(grpc.RpcError):
        rerank_client.rerank(QUERY, DOCS)
    assert servicer.attempts == 1


async def test_async_client_retries_too(scripted: tuple[str, _Scripted]) -> None:
    address, servicer = scripted
    servicer.script(failures=1)
    async with AsyncRerankClient(address, timeout=10) as aclient:
        await aclient.rerank(QUERY, DOCS)
    assert servicer.attempts == 2


def test_every_call_has_a_deadline(scripted: tuple[str, _Scripted]) -> None:
    address, servicer = scripted
    servicer.script(failures=0)
    with RerankClient(address, timeout=5) as rerank_client:
        default = float(rerank_client.rerank(QUERY, DOCS).response.id)
        explicit = float(rerank_client.rerank(QUERY, DOCS, timeout=1.5).response.id)
    # grpc-timeout travels in whole units, rounded up: allow a little over.
    assert 3 < default <= 5.1
    assert 0 < explicit <= 1.6
    with pytest.raises(ValueError):
        RerankClient(address, timeout=0)


def test_client_module_has_no_server_imports(tmp_path: Path) -> None:
    """The client must not pull in the server (onnxruntime, httpx, ...): callers install it alone."""
    code = (
        "import sys, rerankd.client; "
        "heavy = {'onnxruntime', 'httpx', 'rerankd.server', 'rerankd.routing'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "[]"


def test_readme_service_config_is_the_clients() -> None:
    """clients/README.md hands other languages the same service config as the Python client uses."""
    readme = (ROOT / "clients" / "README.md").read_text()
    block = re.search(r"```json\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    assert json.loads(block.group(1)) == SERVICE_CONFIG
