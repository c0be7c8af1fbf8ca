"""Voyage adapter: the pure request builder and parser, then real calls against the fake."""

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
from rerankd.providers.voyage import VoyageProvider

from tests.fakes.base import fake_score
from tests.fakes.voyage import VoyageFake
from tests.providers.replies import reply

KEY = "pa-test-key-0123456789abcdef"
DOCS = [Document("voyage rerank models"), Document("sailing boats"), Document("rerank with voyage")]
OFFLINE = HttpClient()  # for the pure tests: never sends


def provider(
    url: str | None = "https://voyage.test/v1", http: HttpClient | None = None, key: str = KEY
) -> VoyageProvider:
    config = ProviderConfig(kind="voyage", base_url=url, api_key=key)
    return VoyageProvider("voyage", config, http or OFFLINE)


def call(**kwargs: Any) -> ProviderCall:
    return ProviderCall(
        **{"model": "rerank-2.5", "query": "voyage rerank", "documents": DOCS, "timeout": 5.0, **kwargs}
    )


@pytest.fixture(scope="module")
def running() -> Iterator[VoyageFake]:
    with VoyageFake() as fake:
        yield fake  # type: ignore[misc]


def test_request_maps_top_k_truncation_and_rank_fields() -> None:
    docs = [Document("", fields={"title": "T", "body": "B"}), Document("plain")]
    request = provider().build_request(
        call(documents=docs, rank_fields=("title", "body"), top_n=5, headers={"traceparent": "00-ab"})
    )
    assert request.url == "https://voyage.test/v1/rerank"
    assert request.headers["authorization"] == f"Bearer {KEY}" and request.headers["traceparent"] == "00-ab"
    assert json.loads(request.body) == {
        "model": "rerank-2.5",
        "query": "voyage rerank",
        "documents": ["title: T\nbody: B", ""],
        "truncation": True,
        "return_documents": False,
        "top_k": 2,
    }
    strict = json.loads(provider().build_request(call(truncation=Truncation.NONE, parameters={"x": 1})).body)
    assert strict["truncation"] is False and strict["x"] == 1 and "top_k" not in strict


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"max_tokens_per_doc": 10}, "max_tokens_per_doc"), ({"parameters": {"top_k": 1}}, "parameters")],
)
def test_refused_fields(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        provider().build_request(call(**fields))
    assert caught.value.field_violations[0][0] == field


def test_capabilities_and_base_urls() -> None:
    caps = provider().capabilities("rerank-2")
    assert caps.max_documents == 1000 and caps.max_tokens == 16_000 and not caps.object_documents
    assert provider().capabilities("rerank-9").max_tokens is None
    assert provider(None).base_url == "https://api.voyageai.com/v1"
    assert provider(None, key="al-atlas-key-0123456789").base_url == "https://ai.mongodb.com/v1"
    assert (
        provider("https://proxy.test/v1/", key="al-atlas-key-0123456789").base_url == "https://proxy.test/v1"
    )


def test_parse_reads_data_usage_and_model() -> None:
    answer = {
        "object": "list",
        "data": [
            {"index": 1, "relevance_score": 0.7, "document": "sailing boats"},
            {"index": 0, "relevance_score": 0.1},
        ],
        "model": "rerank-2.5-lite",
        "usage": {"total_tokens": 42},
    }
    result = provider().parse_response(call(), reply(answer))
    assert [(s.index, s.score) for s in result.scores] == [(1, 0.7), (0, 0.1)]
    assert (
        result.usage.total_tokens == 42
        and result.usage.search_units == 0
        and result.model == "rerank-2.5-lite"
    )
    with pytest.raises(errors.BadResponse):
        provider().parse_response(call(), reply({"results": answer["data"]}))


def test_error_message_reads_detail_string_or_fastapi_list() -> None:
    p = provider()
    assert p.error_message(reply({"detail": "Model x is not supported."}, 400)) == "Model x is not supported."
    detail = [
        {"loc": ["body", "documents", 0], "msg": "Input should be a valid string", "input": "secret doc"}
    ]
    assert p.error_message(reply({"detail": detail}, 422)) == "documents.0: Input should be a valid string"


async def test_call_against_fake(fake: VoyageFake, http: HttpClient) -> None:
    result = await provider(f"{fake.url}/v1", http).rerank(call(top_n=2))
    expected = sorted(range(3), key=lambda i: -fake_score("voyage rerank", DOCS[i].text))[:2]
    assert [s.index for s in result.scores] == expected
    assert result.usage.total_tokens == 2 * 3 + 3 + 2 + 3 and result.model == "rerank-2.5"
    assert fake.requests[-1].json()["top_k"] == 2


async def test_fake_limits_surface_as_invalid_argument(fake: VoyageFake, http: HttpClient) -> None:
    p = provider(f"{fake.url}/v1", http)
    with pytest.raises(errors.InvalidArgument) as caught:
        await p.rerank(call(documents=[Document(f"doc {i}") for i in range(1001)]))
    assert "at most 1000" in caught.value.message
    with pytest.raises(errors.InvalidArgument) as caught:
        await p.rerank(call(model="rerank-0"))
    assert "rerank-0 is not supported" in caught.value.message


def test_fake_checks_types_like_the_api(fake: VoyageFake) -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    base = {"model": "rerank-2", "query": "q", "documents": ["a"]}
    with httpx.Client(base_url=fake.url) as client:
        for body, loc in [
            ({**base, "documents": ["a", {"text": "b"}]}, ["body", "documents", 1]),
            ({"query": "q", "documents": ["a"]}, ["body", "model"]),
            ({**base, "top_k": "2"}, ["body", "top_k"]),
            ({**base, "truncation": "yes"}, ["body", "truncation"]),
        ]:
            answer = client.post("/v1/rerank", json=body, headers=auth)
            assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == loc, body
        accepted = client.post("/v1/rerank", json={**base, "top_k": None, "extra": 1}, headers=auth)
        assert accepted.status_code == 200 and accepted.json()["object"] == "list"
        assert client.post("/v1/rerank", json=base).status_code == 401
