"""The official `pinecone` SDK against the fake: it must parse the fake's answers and error shapes.

The SDK is pointed at the fake with `Pinecone(host=...)` (its inference client uses that host,
see pinecone/client/inference.py) and sends its own `X-Pinecone-Api-Version`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pinecone import ApiError, Pinecone, RateLimitError, RetryConfig, UnauthorizedError

from tests.fakes.base import Status, fake_score
from tests.fakes.pinecone import PineconeFake, error_reply

MODEL = "bge-reranker-v2-m3"
DOCS = ["Apple is a fruit.", "Acme Inc. revolutionized tech.", "Tech companies are big."]


@pytest.fixture(scope="module")
def running() -> Iterator[PineconeFake]:
    with PineconeFake() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def fake(running: PineconeFake) -> PineconeFake:
    running.clear()
    return running


@pytest.fixture
def client(fake: PineconeFake) -> Pinecone:
    return Pinecone(api_key="pc-sdk-key-0123456789", host=fake.url, retry_config=RetryConfig(max_retries=0))


def test_sdk_parses_rerank_answer(fake: PineconeFake, client: Pinecone) -> None:
    result = client.inference.rerank(model=MODEL, query="tech companies", documents=DOCS, top_n=2)
    expected = sorted(range(3), key=lambda i: fake_score("tech companies", DOCS[i]), reverse=True)[:2]
    assert [row.index for row in result.data] == expected
    assert result.data[0].score == fake_score("tech companies", DOCS[expected[0]])
    assert result.data[0].document == {"text": DOCS[expected[0]]}  # return_documents defaults to true
    assert result.model == MODEL and result.usage.rerank_units == 1
    sent = fake.requests[0]
    assert sent.headers["api-key"] == "pc-sdk-key-0123456789" and sent.headers["x-pinecone-api-version"]


def test_sdk_object_documents_with_rank_fields(client: Pinecone) -> None:
    docs = [{"id": "doc-1", "summary": "Apple is a fruit."}, {"id": "doc-2", "summary": "Acme tech."}]
    result = client.inference.rerank(
        model=MODEL, query="tech", documents=docs, rank_fields=["summary"], return_documents=False
    )
    assert [row.index for row in result.data] == [1, 0]
    assert result.data[0].document is None


def test_sdk_raises_typed_errors(fake: PineconeFake, client: Pinecone) -> None:
    limited = error_reply(429, "Too many requests")
    fake.inject(
        Status(429, limited.body, {"Retry-After": "3"}),
        Status(401, error_reply(401, "Invalid API key.").body),
    )
    with pytest.raises(RateLimitError) as rate:
        client.inference.rerank(model=MODEL, query="q", documents=DOCS)
    assert rate.value.retry_after == 3.0 and rate.value.error_code == "RESOURCE_EXHAUSTED"
    with pytest.raises(UnauthorizedError) as unauthorized:
        client.inference.rerank(model=MODEL, query="q", documents=DOCS)
    assert unauthorized.value.error_code == "UNAUTHENTICATED" and "Invalid API key." in str(
        unauthorized.value
    )


def test_sdk_sees_the_fakes_validation_errors(client: Pinecone) -> None:
    with pytest.raises(ApiError) as info:
        client.inference.rerank(model=MODEL, query="q", documents=[{"title": "no text"}])
    assert info.value.status_code == 400 and info.value.error_code == "INVALID_ARGUMENT"
    assert "missing rank field 'text'" in str(info.value)
