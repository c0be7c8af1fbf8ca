"""Pinecone adapter: the pure request builder and parser, then real calls against the fake."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.domain import Document, Truncation
from rerankd.providers.base import ProviderCall
from rerankd.providers.http import HttpClient, HttpReply
from rerankd.providers.pinecone import PineconeProvider

from tests.fakes.base import Status, fake_score
from tests.fakes.pinecone import CONTRACT, PineconeFake, error_reply

KEY = "pc-fake-key-0123456789"
PURE_HTTP = HttpClient()  # never sends: for the pure builder and parser tests
DOCS = [Document("cats purr softly"), Document("dogs bark"), Document("a cat chased a dog")]


def provider(
    url: str = "http://pinecone.test", http: HttpClient | None = None, **options: str
) -> PineconeProvider:
    config = ProviderConfig(kind="pinecone", base_url=url, api_key=KEY, options=options)
    return PineconeProvider("pinecone", config, http or PURE_HTTP)


def call(**kwargs: object) -> ProviderCall:
    fields: dict[str, object] = {"model": "bge-reranker-v2-m3", "query": "cat", "documents": DOCS, **kwargs}
    return ProviderCall(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def running() -> Iterator[PineconeFake]:
    with PineconeFake() as fake:
        yield fake  # type: ignore[misc]


def test_request_wraps_documents_and_sets_headers() -> None:
    docs = [Document("plain"), Document("", id="d1", fields={"title": "T", "body": "B"})]
    request = provider().build_request(call(documents=docs, top_n=9, headers={"traceparent": "00-abc"}))
    assert request.method == "POST" and request.url == "http://pinecone.test/rerank"
    assert request.headers["api-key"] == KEY
    assert request.headers["x-pinecone-api-version"] == "2025-10"
    assert request.headers["traceparent"] == "00-abc"
    body = json.loads(request.body)
    assert body["documents"] == [{"id": "0", "text": "plain"}, {"id": "d1", "title": "T", "body": "B"}]
    assert body["top_n"] == 2  # clamped to the documents sent
    assert body["return_documents"] is False
    assert body["parameters"] == {"truncate": "END"}
    assert "rank_fields" not in body


def test_request_maps_rank_fields_truncation_parameters_and_version() -> None:
    request = provider(api_version="2026-04").build_request(
        call(rank_fields=("title",), truncation=Truncation.NONE, parameters={"foo": 1})
    )
    body = json.loads(request.body)
    assert body["rank_fields"] == ["title"]
    assert body["parameters"] == {"foo": 1, "truncate": "NONE"}
    assert "top_n" not in body
    assert request.headers["x-pinecone-api-version"] == "2026-04"
    explicit = provider().build_request(call(parameters={"truncate": "NONE"}))
    assert json.loads(explicit.body)["parameters"] == {"truncate": "NONE"}


def test_max_tokens_per_doc_is_refused() -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        provider().build_request(call(max_tokens_per_doc=100))
    assert info.value.field_violations[0][0] == "max_tokens_per_doc"


def test_missing_key_is_a_server_side_error() -> None:
    config = ProviderConfig(kind="pinecone", base_url="http://x", api_key_env="RERANKD_TEST_NO_SUCH_KEY")
    with pytest.raises(errors.ProviderMisconfigured):
        PineconeProvider("pinecone", config, PURE_HTTP).build_request(call())


def test_capabilities_per_model() -> None:
    pinecone = provider()
    assert pinecone.capabilities("cohere-rerank-3.5").max_documents == 200
    assert pinecone.capabilities("bge-reranker-v2-m3").max_documents == 100
    caps = pinecone.capabilities("pinecone-rerank-v0")
    assert caps.object_documents and caps.native_rank_fields


def test_parse_response_reads_score_and_rerank_units() -> None:
    body = {"model": "bge-reranker-v2-m3", "data": [{"index": 2, "score": 0.9}, {"index": 0, "score": 0.1}]}
    body["usage"] = {"rerank_units": 3}
    result = provider().parse_response(call(), HttpReply(200, {}, json.dumps(body).encode()))
    assert [(s.index, s.score) for s in result.scores] == [(2, 0.9), (0, 0.1)]
    assert result.usage.rerank_units == 3 and result.usage.documents == 3
    assert result.model == "bge-reranker-v2-m3"
    with pytest.raises(errors.BadResponse):
        bad = {"model": "m", "data": [{"index": 7, "score": 0.5}], "usage": {"rerank_units": 1}}
        provider().parse_response(call(), HttpReply(200, {}, json.dumps(bad).encode()))


def test_error_message_has_code_and_message() -> None:
    reply = error_reply(400, "bad rank field")
    message = provider().error_message(HttpReply(400, {}, json.dumps(reply.body).encode()))
    assert message == "INVALID_ARGUMENT: bad rank field"


async def test_rerank_against_fake(fake: PineconeFake, http: HttpClient) -> None:
    result = await provider(fake.url, http).rerank(call(top_n=2, headers={"x-request-id": "r1"}))
    expected = sorted(range(3), key=lambda i: fake_score("cat", DOCS[i].text), reverse=True)[:2]
    assert [s.index for s in result.scores] == expected
    assert result.scores[0].score == fake_score("cat", DOCS[expected[0]].text)
    assert result.usage.rerank_units == 1
    assert fake.requests[0].headers["x-request-id"] == "r1"


async def test_object_documents_rank_on_named_fields(fake: PineconeFake, http: HttpClient) -> None:
    docs = [Document(fields={"title": "dogs", "body": "cat"}), Document(fields={"title": "cat", "body": "x"})]
    result = await provider(fake.url, http).rerank(call(documents=docs, rank_fields=("title",)))
    assert [s.index for s in result.scores] == [1, 0]
    sent = fake.requests[0].json()
    assert sent["rank_fields"] == ["title"] and sent["documents"][0]["body"] == "cat"


async def test_missing_rank_field_is_invalid_argument(fake: PineconeFake, http: HttpClient) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        await provider(fake.url, http).rerank(call(rank_fields=("title",)))
    assert "pinecone: INVALID_ARGUMENT" in info.value.message and "title" in info.value.message
    assert not info.value.retryable


async def test_error_statuses_are_mapped(fake: PineconeFake, http: HttpClient) -> None:
    reply = error_reply(429, "too many requests")
    fake.inject(
        Status(429, reply.body, {"Retry-After": "2"}), Status(401, error_reply(401, f"bad {KEY}").body)
    )
    with pytest.raises(errors.ResourceExhausted) as limited:
        await provider(fake.url, http).rerank(call())
    assert limited.value.retry_after == 2.0 and limited.value.retryable
    with pytest.raises(errors.ProviderMisconfigured) as refused:
        await provider(fake.url, http).rerank(call())
    assert KEY not in refused.value.message and "UNAUTHENTICATED" in refused.value.message


async def test_fake_checks_key_version_and_limits(fake: PineconeFake) -> None:
    body = {"model": "bge-reranker-v2-m3", "query": "q", "documents": [{"text": "t"}] * 101}
    async with httpx.AsyncClient(base_url=fake.url) as client:
        no_key = await client.post("/rerank", json=body, headers={"x-pinecone-api-version": "2025-10"})
        no_version = await client.post("/rerank", json=body, headers={"api-key": KEY})
        too_many = await client.post(
            "/rerank", json=body, headers={"api-key": KEY, "x-pinecone-api-version": "2025-10"}
        )
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "UNAUTHENTICATED"
    assert no_version.status_code == 400
    assert too_many.status_code == 400 and "at most 100" in too_many.json()["error"]["message"]


def test_contract_spec_points_at_this_adapter() -> None:
    config = ProviderConfig(**CONTRACT.config("http://127.0.0.1:1"))
    assert config.kind == CONTRACT.kind == PineconeProvider.kind
    assert provider().capabilities(CONTRACT.model).max_documents == CONTRACT.max_documents
