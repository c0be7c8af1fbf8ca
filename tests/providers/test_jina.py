"""Jina adapter: the pure request builder and parser, then real calls against the fake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.domain import Document, Truncation
from rerankd.providers.base import ProviderCall
from rerankd.providers.http import HttpClient
from rerankd.providers.jina import JinaProvider

from tests.fakes.base import fake_score
from tests.fakes.jina import JinaFake
from tests.providers.replies import reply

KEY = "jina_testkey0123456789abcdef"
MODEL = "jina-reranker-v2-base-multilingual"
DOCS = [Document("jina reranker api"), Document("orange juice"), Document("the jina api")]
OFFLINE = HttpClient()  # for the pure tests: never sends


def provider(url: str | None = "https://jina.test/v1", http: HttpClient | None = None) -> JinaProvider:
    return JinaProvider("jina", ProviderConfig(kind="jina", base_url=url, api_key=KEY), http or OFFLINE)


def call(**kwargs: Any) -> ProviderCall:
    return ProviderCall(**{"model": MODEL, "query": "jina api", "documents": DOCS, "timeout": 5.0, **kwargs})


@pytest.fixture(scope="module")
def running() -> Iterator[JinaFake]:
    with JinaFake() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def fake(running: JinaFake) -> JinaFake:
    running.clear()
    running.document_style = "object"
    return running


def test_request_always_sends_model_and_return_documents_false() -> None:
    docs = [Document("", fields={"title": "T"}), Document("plain")]
    request = provider().build_request(call(documents=docs, rank_fields=("title", "text"), top_n=7))
    assert request.url == "https://jina.test/v1/rerank"
    assert (
        request.headers["authorization"] == f"Bearer {KEY}"
        and request.headers["accept"] == "application/json"
    )
    assert json.loads(request.body) == {
        "model": MODEL,
        "query": "jina api",
        "documents": ["title: T", "text: plain"],
        "return_documents": False,
        "top_n": 2,
    }
    assert provider(None).base_url == "https://api.jina.ai/v1"
    assert provider().capabilities(MODEL).max_documents is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"truncation": Truncation.NONE}, "truncation"),
        ({"max_tokens_per_doc": 10}, "max_tokens_per_doc"),
        ({"parameters": {"model": "other"}}, "parameters"),
    ],
)
def test_refused_fields(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        provider().build_request(call(**fields))
    assert caught.value.field_violations[0][0] == field


@pytest.mark.parametrize("document", [{"text": "orange juice"}, "orange juice", None])
def test_parse_accepts_document_as_object_string_or_absent(document: Any) -> None:
    item: dict[str, Any] = {"index": 1, "relevance_score": 0.5}
    if document is not None:
        item["document"] = document
    answer = {
        "model": "jina-reranker-v3",
        "usage": {"total_tokens": 9, "prompt_tokens": 9},
        "results": [item],
    }
    result = provider().parse_response(call(), reply(answer))
    assert [(s.index, s.score) for s in result.scores] == [(1, 0.5)]
    assert result.usage.total_tokens == 9 and result.model == "jina-reranker-v3"


def test_error_message_reads_detail_then_message() -> None:
    assert (
        provider().error_message(reply({"detail": "Query cannot be empty"}, 400)) == "Query cannot be empty"
    )
    assert provider().error_message(reply({"message": "Bad key"}, 401)) == "Bad key"


@pytest.mark.parametrize("style", ["object", "string"])
async def test_call_against_fake(fake: JinaFake, http: HttpClient, style: str) -> None:
    fake.document_style = style
    result = await provider(f"{fake.url}/v1", http).rerank(call(parameters={"return_documents_extra": True}))
    assert {s.index: s.score for s in result.scores} == {
        i: fake_score("jina api", d.text) for i, d in enumerate(DOCS)
    }
    assert result.usage.total_tokens == 2 * 3 + 3 + 2 + 3 and result.model == MODEL
    assert fake.requests[-1].json()["return_documents_extra"] is True


def test_fake_echoes_documents_in_either_shape(fake: JinaFake) -> None:
    body = {"model": MODEL, "query": "q", "documents": ["a", {"text": "b"}], "return_documents": True}
    auth = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=fake.url) as client:

        def echoed() -> list[Any]:
            return [
                r["document"] for r in client.post("/v1/rerank", json=body, headers=auth).json()["results"]
            ]

        assert sorted(d["text"] for d in echoed()) == ["a", "b"]
        fake.document_style = "string"
        assert sorted(echoed()) == ["a", "b"]
        missing_model = client.post("/v1/rerank", json={**body, "model": ""}, headers=auth)
        assert missing_model.status_code == 422 and "model" in missing_model.json()["detail"]
        assert client.post("/v1/rerank", json=body).status_code == 401
