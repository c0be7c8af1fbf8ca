"""The Node.js and Go example clients (clients/) against a live `rerankd serve`: ranking and trace ids.

`make test` installs and builds both first (mk/clients.mk); run `make clients` before running this
module on its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rerankd.client import make_traceparent

from tests.examples import FRANCE_BEST as BEST
from tests.examples import FRANCE_DOCS as DOCS
from tests.examples import FRANCE_QUERY as QUERY
from tests.support import ROOT, server_process

NODE_CLIENT = ROOT / "clients" / "node"
GO_BINARY = ROOT / "clients" / "go" / "build" / "rerank-client"


def _node_command(address: str, traceparent: str, request_id: str, query: str) -> list[str]:
    if not (NODE_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("the Node client's packages are not installed: run `make clients` (npm ci)")
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH")
    return [
        node,
        str(NODE_CLIENT / "rerank-client.mjs"),
        "--addr",
        address,
        "--traceparent",
        traceparent,
        "--request-id",
        request_id,
        "--query",
        query,
        *DOCS,
    ]


def _go_command(address: str, traceparent: str, request_id: str, query: str) -> list[str]:
    if not GO_BINARY.is_file():
        pytest.fail(f"{GO_BINARY.relative_to(ROOT)} is not built: run `make clients`")
    return [
        str(GO_BINARY),
        "-addr",
        address,
        "-traceparent",
        traceparent,
        "-request-id",
        request_id,
        "-query",
        query,
        *DOCS,
    ]


COMMANDS = {"node": _node_command, "go": _go_command}


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process(tmp_path=tmp_path_factory.mktemp("clients")) as server:
        yield server.address


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=Path("/"))


@pytest.mark.parametrize("language", sorted(COMMANDS))
def test_client_ranks_paris_first_and_gets_its_trace_back(address: str, language: str) -> None:
    traceparent = make_traceparent()
    trace_id = traceparent.split("-")[1]
    request_id = f"{language}-client-test"
    done = _run(COMMANDS[language](address, traceparent, request_id, QUERY))
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["sent_trace_id"] == trace_id
    unary, stream = report["unary"], report["stream"]
    for answer in (unary, stream):
        indices = [r["index"] for r in answer["results"]]
        assert indices[0] == BEST
        assert sorted(indices) == [0, 1, 2]
        assert answer["trace_id"] == trace_id
        assert answer["header_trace_id"] == trace_id
        assert answer["id"] == answer["header_request_id"] == request_id
        assert answer["model"] == "ms-marco-MiniLM-L-12-v2"
    assert [r["index"] for r in stream["results"]] == [r["index"] for r in unary["results"]]
    assert report["stream_messages"] >= 3  # header, results, summary


@pytest.mark.parametrize("language", sorted(COMMANDS))
def test_client_reports_an_invalid_request(address: str, language: str) -> None:
    done = _run(COMMANDS[language](address, make_traceparent(), "bad-request", " "))
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Rerank" in done.stderr
    assert "INVALID_ARGUMENT" in done.stderr or "InvalidArgument" in done.stderr  # Node's or Go's name
