"""Drop-in model names (deploy/config/drop-in.yaml): the official Cohere and Pinecone SDKs and
langchain-cohere's CohereRerank, each with the model name it sends by default, against the shipped
configuration: the right ranking, and the answer names the model that really served it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import cohere
import httpx
import pytest
import yaml
from langchain_cohere import CohereRerank
from langchain_core.documents import Document
from pinecone import Pinecone
from rerankd.server import App
from rerankd.v1 import rerank_pb2 as pb

from tests.conftest import running_app, stub_for
from tests.examples import APPLE_BEST, APPLE_DOCS, APPLE_QUERY, FRANCE_BEST, FRANCE_DOCS, FRANCE_QUERY
from tests.support import ROOT

DROP_IN = ROOT / "deploy" / "config" / "drop-in.yaml"
LOCAL_MODEL = "ms-marco-MiniLM-L-12-v2"
# The names each client sends when its user copies the vendor's example (or the framework's default).
SDK_DEFAULTS = [
    "rerank-v3.5",  # Cohere's docs and SDK examples, langchain-cohere's examples
    "rerank-english-v3.0",  # LlamaIndex's CohereRerank default
    "rerank-multilingual-v3.0",
    "bge-reranker-v2-m3",  # Pinecone's default and the seed's example
    "cohere-rerank-3.5",  # Pinecone's hosted Cohere
    "pinecone-rerank-v0",
    "rerank-2",  # Voyage
    "rerank-2-lite",
    "jina-reranker-v2-base-multilingual",  # Jina
    "BAAI/bge-reranker-v2-m3",
    "cross-encoder/ms-marco-MiniLM-L-6-v2",
]


@pytest.fixture(scope="module")
async def drop_in_app() -> AsyncIterator[App]:
    async with running_app(config=DROP_IN) as app:
        yield app


@pytest.fixture
def base_url(drop_in_app: App) -> str:
    return f"http://{drop_in_app.http_address}"


async def test_cohere_client_v2_with_rerank_v3_5(base_url: str) -> None:
    co = cohere.ClientV2(api_key="unused", base_url=base_url, timeout=30)
    reply = await asyncio.to_thread(co.rerank, model="rerank-v3.5", query=APPLE_QUERY, documents=APPLE_DOCS)
    assert reply.results[0].index == APPLE_BEST
    raw = await asyncio.to_thread(
        co.with_raw_response.rerank, model="rerank-v3.5", query=FRANCE_QUERY, documents=FRANCE_DOCS
    )
    assert raw.headers["x-model"] == LOCAL_MODEL and raw.headers["x-provider"] == "local"
    assert raw.data.results[0].index == FRANCE_BEST


async def test_cohere_client_v1_with_llamaindex_default(base_url: str) -> None:
    co = cohere.Client(api_key="unused", base_url=base_url, timeout=30)
    reply = await asyncio.to_thread(
        co.rerank, model="rerank-english-v3.0", query=FRANCE_QUERY, documents=FRANCE_DOCS, top_n=1
    )
    assert [r.index for r in reply.results] == [FRANCE_BEST]


async def test_pinecone_sdk_with_bge_reranker_v2_m3(base_url: str) -> None:
    pc = Pinecone(api_key="unused", host=base_url)
    reply = await asyncio.to_thread(
        pc.inference.rerank,
        model="bge-reranker-v2-m3",
        query=APPLE_QUERY,
        documents=APPLE_DOCS,
        parameters={"truncate": "END"},
    )
    assert reply.data[0].index == APPLE_BEST
    assert reply.model == LOCAL_MODEL  # the model that answered, not the one asked for


async def test_langchain_cohere_rerank(base_url: str) -> None:
    reranker = CohereRerank(model="rerank-v3.5", cohere_api_key="unused", base_url=base_url, top_n=2)
    docs = [Document(page_content=text, metadata={"n": i}) for i, text in enumerate(FRANCE_DOCS)]
    ranked = await asyncio.to_thread(reranker.compress_documents, docs, FRANCE_QUERY)
    assert ranked[0].metadata["n"] == FRANCE_BEST and len(ranked) == 2
    assert ranked[0].metadata["relevance_score"] > ranked[1].metadata["relevance_score"]


@pytest.mark.parametrize("name", SDK_DEFAULTS)
async def test_every_default_name_is_answered_by_the_embedded_model(base_url: str, name: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        reply = await http.post(
            "/portkey/v1/rerank", json={"model": name, "query": FRANCE_QUERY, "documents": FRANCE_DOCS}
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == LOCAL_MODEL and reply.json()["provider"] == "local"
    assert reply.json()["results"][0]["index"] == FRANCE_BEST


async def test_a_name_no_pattern_fits_is_still_a_404(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        reply = await http.post("/v2/rerank", json={"model": "gpt-4o", "query": "q", "documents": ["a"]})
    assert reply.status_code == 404
    assert "rerank-*" in reply.json()["message"]


async def test_without_the_drop_in_config_the_404_names_the_option(local_app: App) -> None:
    async with httpx.AsyncClient(base_url=f"http://{local_app.http_address}", timeout=30) as http:
        reply = await http.post("/v2/rerank", json={"model": "rerank-v3.5", "query": "q", "documents": ["a"]})
    assert reply.status_code == 404
    message = reply.json()["message"]
    assert "'rerank-v3.5' is not served here" in message and "deploy/config/drop-in.yaml" in message


# Every dialect's path and a body asking for a drop-in name (TEI's `model` is rerankd's extension).
DIALECT_CALLS = [
    ("/v1/rerank", {"model": "rerank-english-v3.0", "query": FRANCE_QUERY, "documents": FRANCE_DOCS}),
    ("/v2/rerank", {"model": "rerank-v3.5", "query": FRANCE_QUERY, "documents": FRANCE_DOCS}),
    ("/portkey/v1/rerank", {"model": "rerank-v3.5", "query": FRANCE_QUERY, "documents": FRANCE_DOCS}),
    ("/rerank", {"model": "bge-reranker-v2-m3", "query": FRANCE_QUERY, "documents": FRANCE_DOCS}),
    ("/tei/rerank", {"model": "BAAI/bge-reranker-v2-m3", "query": FRANCE_QUERY, "texts": FRANCE_DOCS}),
]


@pytest.mark.parametrize(("path", "body"), DIALECT_CALLS, ids=[path for path, _ in DIALECT_CALLS])
async def test_every_dialect_names_the_model_that_answered(
    base_url: str, path: str, body: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        reply = await http.post(path, json=body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-model"] == LOCAL_MODEL and reply.headers["x-provider"] == "local"
    answer = reply.json()
    if isinstance(answer, dict) and "model" in answer:  # Pinecone's and Portkey's shapes have the field
        assert answer["model"] == LOCAL_MODEL


async def test_grpc_names_the_model_that_answered(drop_in_app: App) -> None:
    async with stub_for(drop_in_app) as stub:
        call = stub.Rerank(
            pb.RerankRequest(
                model="rerank-v3.5", query=FRANCE_QUERY, documents=[pb.Document(text=t) for t in FRANCE_DOCS]
            ),
            timeout=30,
        )
        reply = await call
        trailers = dict(await call.trailing_metadata())
    assert reply.model == LOCAL_MODEL and reply.provider == "local"
    assert reply.results[0].index == FRANCE_BEST and trailers["x-provider"] == "local"


async def test_list_models_names_the_patterns_the_route_answers(drop_in_app: App) -> None:
    async with stub_for(drop_in_app) as stub:
        listed = await stub.ListModels(pb.ListModelsRequest(), timeout=30)
    by_name = {model.name: model for model in listed.models}
    shipped = yaml.safe_load(DROP_IN.read_text())["routes"]["default"]["match"]
    assert list(by_name["default"].match) == shipped
    assert not by_name[LOCAL_MODEL].match  # a provider model answers only its own name
