"""TEI's own API (api/http/tei.py): the tei-client package (which reads GET /info before anything
else) and TEI's documented curl call, against `tei_port` with only the host changed, and against
the shared port under /tei; /info in TEI's Info shape, true to the loaded model; /health."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from grpc_health.v1 import health_pb2
from rerankd import __version__
from rerankd.api.http import bodies
from rerankd.server import App
from tei_client import HttpClient, ModelType

from tests.conftest import running_app
from tests.examples import FRANCE_BEST, FRANCE_DOCS, FRANCE_QUERY
from tests.local.graphs import write_model
from tests.support import free_port, server_process
from tests.test_auth import write_tokens

BUNDLED_ID = "cross-encoder/ms-marco-MiniLM-L-12-v2"
# TEI's README, "Using Re-rankers models", as written (only the host:port changes).
TEI_README_CURL = """curl 127.0.0.1:8080/rerank \\
    -X POST \\
    -d '{"query": "What is Deep Learning?", "texts": ["Deep Learning is not...", "Deep learning is..."]}' \\
    -H 'Content-Type: application/json'"""


@pytest.fixture(scope="module")
async def tei_app() -> AsyncIterator[App]:
    async with running_app(tei_port=0) as app:
        yield app


async def test_tei_client_works_against_tei_port_with_only_the_host_changed(tei_app: App) -> None:
    client = HttpClient(f"http://{tei_app.tei_address}", timeout=30)
    assert await asyncio.to_thread(client.health)
    info = await asyncio.to_thread(client.info)
    assert info.server_model_type is ModelType.Reranker and info.server_model_id == BUNDLED_ID
    ranked = await asyncio.to_thread(client.rerank, FRANCE_QUERY, FRANCE_DOCS, return_text=True)
    assert ranked.ranks[0].index == FRANCE_BEST and ranked.ranks[0].text == FRANCE_DOCS[FRANCE_BEST]
    assert [r.score for r in ranked.ranks] == sorted((r.score for r in ranked.ranks), reverse=True)
    raw = await client.async_rerank(FRANCE_QUERY, FRANCE_DOCS, raw_scores=True)  # model type known by now
    assert raw.ranks[0].index == FRANCE_BEST and raw.ranks[0].score > 1.0  # a logit, not a probability


async def test_tei_client_works_on_the_shared_port_under_tei(tei_app: App) -> None:
    client = HttpClient(f"http://{tei_app.http_address}/tei", timeout=30)
    assert (await client.async_info()).server_model_id == BUNDLED_ID
    # tei-client's async_rerank checks the model type with a blocking /info call (tei_client's
    # ModelTypeMixin), which would stall this loop and the server in it: the sync client, on a thread.
    ranked = await asyncio.to_thread(client.rerank, FRANCE_QUERY, FRANCE_DOCS)
    assert ranked.ranks[0].index == FRANCE_BEST


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_teis_documented_curl_call_as_written(tei_app: App) -> None:
    command = TEI_README_CURL.replace("127.0.0.1:8080", tei_app.tei_address)
    done = await asyncio.to_thread(
        subprocess.run, ["bash", "-c", command + " -sS"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    ranks = bodies.TeiResponse.model_validate_json(done.stdout).root
    assert sorted(rank.index for rank in ranks) == [0, 1] and ranks[0].score >= ranks[1].score


async def test_info_is_teis_shape_and_true_to_the_loaded_model(tei_app: App) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        own = await http.get(f"http://{tei_app.tei_address}/info")
        shared = await http.get(f"http://{tei_app.http_address}/tei/info")
    assert own.status_code == 200 and own.json() == shared.json()
    assert own.headers["x-request-id"]  # ids on every answer, as elsewhere
    info = bodies.TeiInfo.model_validate(own.json()).model_dump()
    local = tei_app.providers["local"]
    assert info == {
        "model_id": BUNDLED_ID,
        "model_sha": None,
        "model_dtype": "int8",
        "served_model_name": "ms-marco-MiniLM-L-12-v2",
        "model_type": {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}},
        "max_concurrent_requests": tei_app.settings.max_concurrent_requests,
        "max_input_length": 512,
        "max_batch_tokens": 512,
        "max_batch_requests": 1,
        "max_client_batch_size": tei_app.settings.max_documents,
        "auto_truncate": True,
        "tokenization_workers": 2,
        "version": __version__,
        "sha": None,
        "docker_label": None,
    }
    assert local.encoder.labels == 1  # one class: TEI calls that a reranker


async def test_info_of_a_hosted_default_says_only_what_is_known() -> None:
    providers = {
        "co": {"kind": "cohere", "base_url": "http://127.0.0.1:9", "api_key": "k", "models": ["rerank-v3.5"]}
    }
    routes = {
        "default": {
            "targets": [{"provider": "co", "model": "rerank-v3.5"}, {"provider": "local", "priority": 1}]
        }
    }
    async with (
        running_app(providers=providers, routes=routes, tei_port=0) as app,
        httpx.AsyncClient() as http,
    ):
        reply = await http.get(f"http://{app.tei_address}/info", timeout=30)
    info = bodies.TeiInfo.model_validate(reply.json())
    assert (info.model_id, info.served_model_name, info.model_dtype) == (
        "rerank-v3.5",
        "rerank-v3.5",
        "unknown",
    )
    assert info.model_type.reranker.id2label == {} and info.max_input_length is None


async def test_health_is_503_in_teis_shape_unless_ready(tei_app: App) -> None:
    async with httpx.AsyncClient(base_url=f"http://{tei_app.tei_address}", timeout=30) as http:
        ready = await http.get("/health")
        assert ready.status_code == 200 and ready.content == b""
        await tei_app.health.set("readiness", health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            down = await http.get("/health")
        finally:
            await tei_app.health.set("readiness", health_pb2.HealthCheckResponse.SERVING)
    assert down.status_code == 503
    assert down.json() == {"error": "unhealthy", "error_type": "Unhealthy"}


async def test_info_needs_a_token_when_auth_is_on_and_health_does_not(tmp_path: Path) -> None:
    async with (
        running_app(tei_port=0, auth_tokens_file=write_tokens(tmp_path)) as app,
        httpx.AsyncClient() as http,
    ):
        refused = await http.get(f"http://{app.tei_address}/info", timeout=30)
        health = await http.get(f"http://{app.tei_address}/health", timeout=30)
    assert refused.status_code == 401 and bodies.TeiError.model_validate(refused.json())
    assert health.status_code == 200


def test_rerankd_serve_tei_port_flag(tmp_path: Path) -> None:
    port = free_port()
    with server_process("--tei-port", str(port), tmp_path=tmp_path) as server:
        reply = httpx.post(
            f"http://127.0.0.1:{port}/rerank", json={"query": FRANCE_QUERY, "texts": FRANCE_DOCS}, timeout=30
        )
        assert reply.status_code == 200 and reply.json()[0]["index"] == FRANCE_BEST
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=30).json()["paths"].keys() == {
            "/rerank",
            "/info",
            "/health",
            "/openapi.json",
        }
    assert f"TEI API on http://127.0.0.1:{port}" in server.log()
    assert json.dumps(FRANCE_DOCS[0])[1:-1] not in server.log()


@pytest.mark.parametrize(
    ("labels", "config", "id2label"),
    [
        (1, {"id2label": {"0": "relevant"}, "label2id": {"relevant": 0}}, {"0": "relevant"}),
        (2, {}, {"0": "LABEL_0", "1": "LABEL_1"}),  # no labels in config.json: the head's classes
    ],
)
async def test_info_of_a_model_folder_comes_from_its_files(
    tmp_path: Path, labels: int, config: dict[str, object], id2label: dict[str, str]
) -> None:
    folder = write_model(tmp_path / "model", labels=labels, config=config)
    async with (
        running_app(model_dir=folder, local_max_length=64, tei_port=0) as app,
        httpx.AsyncClient() as http,
    ):
        reply = await http.get(f"http://{app.tei_address}/info", timeout=30)
    info = bodies.TeiInfo.model_validate(reply.json())
    assert (info.model_id, info.model_sha, info.model_dtype) == (str(folder), None, "float32")
    assert info.model_type.reranker.id2label == id2label
    assert info.model_type.reranker.label2id == {label: int(i) for i, label in id2label.items()}
    assert info.max_input_length == info.max_batch_tokens == 64


async def test_rerankd_s_own_tei_provider_serves_through_tei_port(tei_app: App) -> None:
    """rerankd in front of rerankd: the `tei` provider (written to TEI's documented API) as a client."""
    upstream = {"kind": "tei", "base_url": f"http://{tei_app.tei_address}", "models": ["upstream-reranker"]}
    body = {"model": "upstream-reranker", "query": FRANCE_QUERY, "documents": FRANCE_DOCS}
    async with (
        running_app(local_enabled=False, providers={"upstream": upstream}) as front,
        httpx.AsyncClient() as http,
    ):
        reply = await http.post(f"http://{front.http_address}/v2/rerank", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"][0]["index"] == FRANCE_BEST and reply.headers["x-provider"] == "upstream"


async def test_info_without_a_default_route_is_teis_error_naming_the_way_out() -> None:
    async with running_app(local_enabled=False, routes={}, tei_port=0) as app, httpx.AsyncClient() as http:
        reply = await http.get(f"http://{app.tei_address}/info", timeout=30)
    assert reply.status_code == 404 and reply.json()["error_type"] == "Backend"
    assert "'default' is not served here" in reply.json()["error"]
