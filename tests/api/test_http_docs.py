"""The curl examples of docs/http-api.md, run as written (only the port changes) against a live
server: each must answer in its dialect's shape, rank as the doc says, and match the sample answer
printed under it. Examples marked `config=drop-in` run against deploy/config/drop-in.yaml; those
are the seed pages' own curl examples (../shared/seeds/), which a test compares with the seeds."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from pydantic import BaseModel
from rerankd.api.http import bodies
from rerankd.server import App
from rerankd.v1 import rerank_pb2 as pb

from tests.conftest import running_app, stub_for
from tests.support import ROOT

DOC = ROOT / "docs" / "http-api.md"
DOC_ADDRESS = "http://127.0.0.1:8080"
SEEDS = ROOT.parent / "shared" / "seeds"
SEED_HOSTS = {
    "pinecone-rerank.txt": "https://api.pinecone.io",
    "portkey-rerank.txt": "https://api.portkey.ai",
}
# What a user of the seed APIs has in the environment when running their examples.
SEED_ENV = {"PORTKEY_API_KEY": "pk-example", "PORTKEY_PROVIDER_VIRTUAL_KEY": "vk-example"}
_EXAMPLE = re.compile(
    r"<!-- expect: (?P<expect>[^>]*?) -->\s*"
    r"```bash\n(?P<command>.*?)```\s*"
    r"```(?:json|http)\n(?P<sample>.*?)```",
    re.S,
)
_SHAPES: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "cohere-v1": (bodies.CohereResponse, bodies.CohereError),
    "cohere-v2": (bodies.CohereResponse, bodies.CohereError),
    "portkey": (bodies.PortkeyResponse, bodies.PortkeyError),
    "pinecone": (bodies.PineconeResponse, bodies.PineconeError),
    "tei": (bodies.TeiResponse, bodies.TeiError),
}


@dataclass
class Example:
    expect: dict[str, str]
    command: str
    sample: str

    @property
    def dialect(self) -> str:
        return self.expect["dialect"]


def examples() -> list[Example]:
    found = []
    for match in _EXAMPLE.finditer(DOC.read_text(encoding="utf-8")):
        expect = dict(pair.split("=", 1) for pair in match["expect"].split())
        found.append(Example(expect, match["command"].strip(), match["sample"].strip()))
    return found


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def parse(output: str, with_headers: bool) -> Answer:
    """curl's output: the body, or with -i the status line and headers, a blank line, the body."""
    if not with_headers:
        return Answer(200, {}, json.loads(output))
    head, _, body = output.replace("\r\n", "\n").partition("\n\n")
    status_line, *lines = head.split("\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, json.loads(body))


def ranking(dialect: str, body: Any) -> list[tuple[int, float]]:
    items = body if dialect == "tei" else body["data"] if dialect == "pinecone" else body["results"]
    return [(item["index"], item.get("relevance_score", item.get("score"))) for item in items]


def test_the_doc_has_an_example_for_every_dialect_and_an_error() -> None:
    found = examples()
    assert {e.dialect for e in found} == set(_SHAPES)
    assert any(int(e.expect.get("status", "200")) >= 400 for e in found)
    for example in found:
        assert "curl " in example.command and DOC_ADDRESS in example.command
    assert {e.dialect for e in found if e.expect.get("config") == "drop-in"} == {"pinecone", "portkey"}


def seed_commands() -> list[str]:
    """The curl examples of the seed pages, from the variable lines before them to the closing quote
    of their body, with the host changed to the doc's."""
    commands = []
    for name, host in SEED_HOSTS.items():
        text = (SEEDS / name).read_text(encoding="utf-8")
        start = text.index("PINECONE_API_KEY=") if "PINECONE_API_KEY=" in text else text.index("curl ")
        end = text.index("}'", start) + 2
        commands.append(text[start:end].replace(host, DOC_ADDRESS))
    return commands


@pytest.mark.skipif(not SEEDS.is_dir(), reason="no ../shared/seeds beside this checkout")
def test_the_drop_in_examples_are_the_seed_pages_curl_examples() -> None:
    documented = [e.command for e in examples() if e.expect.get("config") == "drop-in"]
    assert [_squeeze(c) for c in documented] == [_squeeze(c) for c in seed_commands()]


def _squeeze(command: str) -> str:
    return re.sub(r"\s+", " ", command).strip()


@pytest.fixture(scope="module")
async def drop_in_app() -> AsyncIterator[App]:
    async with running_app(config=ROOT / "deploy" / "config" / "drop-in.yaml") as app:
        yield app


def _ids(example: Example) -> str:
    return f"{example.dialect}-{example.expect.get('status', '200')}"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("example", [e for e in examples() if "config" not in e.expect], ids=_ids)
async def test_the_curl_example_works_as_written(local_app: App, example: Example) -> None:
    await run_example(local_app, example)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("example", [e for e in examples() if "config" in e.expect], ids=_ids)
async def test_the_seed_example_works_against_the_drop_in_config(drop_in_app: App, example: Example) -> None:
    await run_example(drop_in_app, example)


async def run_example(app: App, example: Example) -> None:
    command = example.command.replace(DOC_ADDRESS, f"http://{app.http_address}")
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **SEED_ENV},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    with_headers = " -i " in f" {command} "
    answer = parse(stdout.decode(), with_headers)
    sample = parse(example.sample, with_headers)

    status = int(example.expect.get("status", "200"))
    assert answer.status == sample.status == status
    ok_shape, error_shape = _SHAPES[example.dialect]
    (ok_shape if status < 400 else error_shape).model_validate(answer.body)
    for key, value in example.expect.items():
        if key.startswith("header:"):
            assert answer.headers[key.removeprefix("header:")] == value
            assert sample.headers[key.removeprefix("header:")] == value
    if status >= 400:
        assert answer.body == sample.body
        return
    live, printed = ranking(example.dialect, answer.body), ranking(example.dialect, sample.body)
    assert live[0][0] == int(example.expect["best"])
    assert [i for i, _ in live] == [i for i, _ in printed]
    assert [s for _, s in live] == pytest.approx([s for _, s in printed], abs=1e-4)
    assert unscored(example.dialect, answer.body) == unscored(example.dialect, sample.body)


def unscored(dialect: str, body: Any) -> list[dict[str, Any]]:
    """The results without their scores: indices and echoed documents or texts."""
    items = body if dialect == "tei" else body["data"] if dialect == "pinecone" else body["results"]
    return [{k: v for k, v in item.items() if k not in ("relevance_score", "score")} for item in items]


async def test_the_documented_token_headers_hold_on_both_front_doors(tmp_path: Path) -> None:
    """Issue 17, finding 7: docs/http-api.md said HTTP auth headers were "accepted and ignored"
    (they are enforced) and SECURITY.md did not say gRPC takes api-key / x-api-key too."""
    auth_section = DOC.read_text().split("## Auth", 1)[1]
    assert "ignored" not in auth_section and "401" in auth_section and "X-Api-Key" in auth_section
    security = " ".join((ROOT / "SECURITY.md").read_text().split())
    assert "`x-api-key: <token>` (for SDKs that send those), as gRPC metadata and as HTTP headers" in security
    token = "0123456789abcdef0123456789abcdef"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice: {token}\n")
    body = {"model": "nope", "query": "q", "documents": ["a"]}
    request = pb.RerankRequest(model="nope", query="q", documents=[pb.Document(text="a")])
    async with (
        running_app(local_enabled=False, auth_tokens_file=tokens) as app,
        stub_for(app) as stub,
        httpx.AsyncClient(base_url=f"http://{app.http_address}", timeout=10) as http,
    ):
        assert (await http.post("/v2/rerank", json=body)).status_code == 401
        for name in ("authorization", "api-key", "x-api-key"):
            value = f"Bearer {token}" if name == "authorization" else token
            assert (await http.post("/v2/rerank", json=body, headers={name: value})).status_code == 404
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Rerank(request, metadata=((name, value),), timeout=10)
            assert caught.value.code() is grpc.StatusCode.NOT_FOUND  # authenticated, then routed
