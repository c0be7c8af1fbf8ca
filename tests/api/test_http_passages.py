"""The winning passage in the HTTP dialects: rerankd's extra `passage` field on each result in the
Cohere v1/v2, Portkey and Pinecone shapes (parsed by the official Cohere and Pinecone SDKs), and
none in TEI's closed shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import cohere
import httpx
import pytest
from pinecone import Pinecone
from rerankd.api.http import bodies
from rerankd.server import App

from tests.conftest import running_app
from tests.examples import FRANCE_QUERY
from tests.local.test_passages import DOCS, LONG, PASSAGES, SENTENCE


@pytest.fixture(scope="module")
async def passages_app() -> AsyncIterator[App]:
    """The embedded model with passages configured, so dialects without `parameters` get them."""
    options = {"passages": PASSAGES, "threads": 1}
    async with running_app(providers={"local": {"kind": "local", "options": options}}) as app:
        yield app


def covers_the_sentence(passage: dict[str, Any]) -> bool:
    start = LONG.index(SENTENCE)
    return passage["start"] <= start and start + len(SENTENCE) <= passage["end"] and passage["count"] > 1


async def test_cohere_shapes_carry_the_passage_and_the_sdks_parse_them(passages_app: App) -> None:
    base_url = f"http://{passages_app.http_address}"
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        for path in ("/v1/rerank", "/v2/rerank"):
            reply = await http.post(path, json={"model": "default", "query": FRANCE_QUERY, "documents": DOCS})
            assert reply.status_code == 200, reply.text
            data = reply.json()
            bodies.CohereResponse.model_validate(data)
            assert data["results"][0]["index"] == 1 and covers_the_sentence(data["results"][0]["passage"])
            assert [r["passage"]["count"] for r in data["results"][1:]] == [1, 1]
    v2 = cohere.ClientV2(api_key="test-key", base_url=base_url, timeout=60)
    reply = await asyncio.to_thread(v2.rerank, model="default", query=FRANCE_QUERY, documents=DOCS)
    assert reply.results[0].index == 1
    v1 = cohere.Client(api_key="test-key", base_url=base_url, timeout=60)
    reply_v1 = await asyncio.to_thread(v1.rerank, model="default", query=FRANCE_QUERY, documents=DOCS)
    assert reply_v1.results[0].index == 1


async def test_tei_shape_has_no_passage_field(passages_app: App) -> None:
    base_url = f"http://{passages_app.http_address}"
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        reply = await http.post("/tei/rerank", json={"query": FRANCE_QUERY, "texts": DOCS})
    ranks = reply.json()
    bodies.TeiResponse.model_validate(ranks)  # closed shape: an extra field would fail here
    assert ranks[0]["index"] == 1


async def test_per_request_passages_in_the_portkey_and_pinecone_shapes(local_app: App) -> None:
    base_url = f"http://{local_app.http_address}"
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        body = {"query": FRANCE_QUERY, "documents": DOCS, "parameters": {"passages": PASSAGES}}
        portkey = (await http.post("/portkey/v1/rerank", json=body)).json()
        bodies.PortkeyResponse.model_validate(portkey)
        assert portkey["results"][0]["index"] == 1 and covers_the_sentence(portkey["results"][0]["passage"])
        pinecone_body = {**body, "model": "default", "documents": [{"text": d} for d in DOCS]}
        raw = (await http.post("/rerank", json=pinecone_body)).json()
        bodies.PineconeResponse.model_validate(raw)
        assert raw["data"][0]["index"] == 1 and covers_the_sentence(raw["data"][0]["passage"])
        plain = (await http.post("/portkey/v1/rerank", json={**body, "parameters": {}})).json()
        assert plain["results"][0]["index"] != 1 and all("passage" not in r for r in plain["results"])
    pc = Pinecone(api_key="test-key", host=base_url)
    reply = await asyncio.to_thread(
        pc.inference.rerank,
        model="default",
        query=FRANCE_QUERY,
        documents=DOCS,
        parameters={"passages": PASSAGES},
    )
    assert reply.data[0].index == 1 and reply.data[0].document["text"] == LONG
