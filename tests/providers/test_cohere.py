"""Cohere adapter (v2 and v1): the pure request builder and parser, then real calls against the fake."""

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
from rerankd.providers.cohere import CohereProvider
from rerankd.providers.http import HttpClient, HttpReply

from tests.fakes.base import fake_score
from tests.fakes.cohere import CohereFake
from tests.providers.replies import reply

KEY = "co-test-key-0123456789abcdef"
OFFLINE = HttpClient()  # for the pure tests: never sends
DOCS = [Document("the cat sat"), Document("dogs bark loudly"), Document("a cat and a dog")]
FIELDS = [
    Document("", fields={"title": "cat facts", "body": "cats purr"}),
    Document("ignored", fields={"title": "dog facts"}),
]


def provider(
    url: str = "https://api.cohere.test", http: HttpClient | None = None, **options: Any
) -> CohereProvider:
    config = ProviderConfig(kind="cohere", base_url=url, api_key=KEY, options=options)
    return CohereProvider("cohere", config, http or OFFLINE)


def call(**kwargs: Any) -> ProviderCall:
    return ProviderCall(
        **{"model": "rerank-v3.5", "query": "cat", "documents": DOCS, "timeout": 5.0, **kwargs}
    )


def body_of(p: CohereProvider, c: ProviderCall) -> dict[str, Any]:
    return json.loads(p.build_request(c).body)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def running() -> Iterator[CohereFake]:
    with CohereFake() as fake:
        yield fake  # type: ignore[misc]


def test_v2_request_sends_strings_and_v2_fields_only() -> None:
    request = provider().build_request(
        call(top_n=10, max_tokens_per_doc=512, parameters={"priority": 1}, headers={"traceparent": "00-ab"})
    )
    assert request.method == "POST" and request.url == "https://api.cohere.test/v2/rerank"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["traceparent"] == "00-ab"
    assert json.loads(request.body) == {
        "model": "rerank-v3.5",
        "query": "cat",
        "documents": ["the cat sat", "dogs bark loudly", "a cat and a dog"],
        "max_tokens_per_doc": 512,
        "top_n": 3,  # clamped to the documents sent
        "priority": 1,
    }


def test_v2_renders_rank_fields_into_text() -> None:
    body = body_of(provider(), call(documents=FIELDS, rank_fields=("title", "body")))
    assert body["documents"] == ["title: cat facts\nbody: cats purr", "title: dog facts"]
    assert "rank_fields" not in body and "top_n" not in body and "return_documents" not in body


def test_v1_sends_objects_and_native_rank_fields() -> None:
    p = provider(api_version="v1")
    request = p.build_request(call(documents=FIELDS, rank_fields=("title", "body"), top_n=1))
    assert request.url.endswith("/v1/rerank")
    assert json.loads(request.body) == {
        "model": "rerank-v3.5",
        "query": "cat",
        "documents": [{"title": "cat facts", "body": "cats purr"}, {"title": "dog facts"}],
        "rank_fields": ["title", "body"],
        "return_documents": False,
        "top_n": 1,
    }
    assert body_of(p, call())["documents"] == ["the cat sat", "dogs bark loudly", "a cat and a dog"]
    assert p.capabilities("rerank-english-v3.0").native_rank_fields
    assert not provider().capabilities("rerank-v3.5").object_documents
    assert provider().capabilities("rerank-v3.5").max_documents == 1000


@pytest.mark.parametrize(
    ("version", "fields", "field"),
    [
        ("v2", {"truncation": Truncation.NONE}, "truncation"),
        ("v1", {"truncation": Truncation.NONE}, "truncation"),
        ("v1", {"max_tokens_per_doc": 100}, "max_tokens_per_doc"),
        ("v2", {"parameters": {"top_n": 2}}, "parameters"),
        ("v1", {"parameters": {"documents": []}}, "parameters"),
    ],
)
def test_fields_cohere_cannot_honour_are_refused(version: str, fields: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        provider(api_version=version).build_request(call(**fields))
    assert caught.value.field_violations[0][0] == field
    assert caught.value.provider == "cohere" and not caught.value.retryable


def test_version_from_options_or_pasted_endpoint() -> None:
    assert provider(api_version=1).api_version == "v1"
    pasted = provider("https://api.cohere.test/v1/rerank")
    assert (
        pasted.api_version == "v1" and pasted.build_request(call()).url == "https://api.cohere.test/v1/rerank"
    )
    assert (
        provider("https://api.cohere.test/").build_request(call()).url == "https://api.cohere.test/v2/rerank"
    )
    with pytest.raises(errors.ProviderMisconfigured):
        provider("https://api.cohere.test/v1/rerank", api_version="v2")
    with pytest.raises(errors.ProviderMisconfigured):
        provider(api_version="v3")


def test_parse_keeps_order_scores_and_search_units() -> None:
    answer = {
        "id": "x",
        "results": [
            {"index": 2, "relevance_score": 0.9, "document": {"text": "a cat and a dog"}},
            {"index": 0, "relevance_score": 0.25},
        ],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
    }
    result = provider().parse_response(call(), reply(answer))
    assert [(s.index, s.score) for s in result.scores] == [(2, 0.9), (0, 0.25)]
    assert result.usage.search_units == 1 and result.usage.documents == 3
    assert result.model == "rerank-v3.5"
    assert provider().parse_response(call(), reply({"results": []})).usage.search_units == 0


@pytest.mark.parametrize(
    "answer",
    [
        {"results": [{"index": 3, "relevance_score": 0.5}]},
        {"results": [{"index": 0, "relevance_score": "high"}]},
        {"results": [{"index": 0, "relevance_score": 0.5}, {"index": 0, "relevance_score": 0.4}]},
        {"results": [{"relevance_score": 0.5}]},
        {"meta": {}},
        [],
    ],
)
def test_parse_refuses_answers_that_make_no_sense(answer: Any) -> None:
    with pytest.raises(errors.BadResponse):
        provider().parse_response(call(), reply(answer))


def test_error_message_reads_cohere_body() -> None:
    p = provider()
    assert p.error_message(reply({"message": "invalid request: query must not be empty"}, 400)) == (
        "invalid request: query must not be empty"
    )
    assert p.error_message(HttpReply(502, {}, b"<html>bad gateway</html>")) == "<html>bad gateway</html>"


async def test_v2_call_against_fake(fake: CohereFake, http: HttpClient) -> None:
    result = await provider(fake.url, http).rerank(call(top_n=2, headers={"x-request-id": "r1"}))
    expected = sorted(range(3), key=lambda i: -fake_score("cat", DOCS[i].text))[:2]
    assert [s.index for s in result.scores] == expected
    assert result.scores[0].score == fake_score("cat", DOCS[expected[0]].text)
    assert result.usage.search_units == 1
    sent = fake.requests[-1]
    assert sent.path == "/v2/rerank" and sent.headers["x-request-id"] == "r1"
    assert "return_documents" not in sent.json()


async def test_v1_object_documents_against_fake(fake: CohereFake, http: HttpClient) -> None:
    result = await provider(fake.url, http, api_version="v1").rerank(
        call(documents=FIELDS, rank_fields=("title",))
    )
    assert {s.index: s.score for s in result.scores} == {
        0: fake_score("cat", "cat facts"),
        1: fake_score("cat", "dog facts"),
    }
    assert fake.requests[-1].json()["documents"][0] == {"title": "cat facts"}


async def test_provider_message_reaches_the_caller(fake: CohereFake, http: HttpClient) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        await provider(fake.url, http).rerank(call(query="   "))
    assert caught.value.message == "cohere: invalid request: query must not be empty or be only whitespace"


async def test_missing_key_fails_before_any_request(fake: CohereFake, http: HttpClient) -> None:
    p = CohereProvider("cohere", ProviderConfig(kind="cohere", base_url=fake.url), http)
    with pytest.raises(errors.ProviderMisconfigured):
        await p.rerank(call())
    assert fake.requests == []


def test_fake_refuses_what_the_v2_api_refuses(fake: CohereFake) -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    base = {"model": "rerank-v3.5", "query": "q"}
    cases = [
        ({**base, "documents": [{"text": "object"}]}, "documents must be a list of strings"),
        ({**base, "documents": ["a"], "return_documents": True}, "return_documents is not a valid field"),
        ({"query": "q", "documents": ["a"]}, "model is required"),
        ({**base, "documents": []}, "list of documents must not be empty"),
        ({**base, "documents": ["a"], "top_n": 0}, "top_n must be a positive integer"),
    ]
    with httpx.Client(base_url=fake.url) as client:
        for body, message in cases:
            answer = client.post("/v2/rerank", json=body, headers=auth)
            assert answer.status_code == 400 and message in answer.json()["message"], body
        assert client.post("/v2/rerank", json=cases[0][0]).status_code == 401
