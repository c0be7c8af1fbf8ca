"""The official `cohere` SDK (ClientV2 and Client) against the fake: it must parse answers and errors.

The SDK is pointed at the fake with `base_url=` (cohere/client.py strips "/v1" only from
cohere.com hosts), retries off per request (`request_options`, which cohere 5.x, the line
langchain-cohere needs, and 7.x both take) so an injected fault is seen once.
"""

from __future__ import annotations

from collections.abc import Iterator

import cohere
import pytest
from cohere.core.api_error import ApiError

from tests.fakes.base import Status, fake_score
from tests.fakes.cohere import CohereFake, error_reply

KEY = "co-sdk-key-0123456789abcdef"
DOCS = [
    "Carson City is the capital of Nevada.",
    "Washington, D.C. is the capital of the United States.",
    "Bananas.",
]
QUERY = "What is the capital of the United States?"
NO_RETRIES: cohere.core.RequestOptions = {"max_retries": 0}


@pytest.fixture(scope="module")
def running() -> Iterator[CohereFake]:
    with CohereFake() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def fake(running: CohereFake) -> CohereFake:
    running.clear()
    return running


def _expected(texts: list[str]) -> list[int]:
    return sorted(range(len(texts)), key=lambda i: -fake_score(QUERY, texts[i]))


def test_client_v2_parses_the_answer(fake: CohereFake) -> None:
    client = cohere.ClientV2(api_key=KEY, base_url=fake.url)
    response = client.rerank(
        request_options=NO_RETRIES,
        model="rerank-v3.5",
        query=QUERY,
        documents=DOCS,
        top_n=2,
        max_tokens_per_doc=512,
    )
    assert [r.index for r in response.results] == _expected(DOCS)[:2]
    assert response.results[0].relevance_score == fake_score(QUERY, DOCS[response.results[0].index])
    assert response.meta is not None and response.meta.billed_units is not None
    assert response.meta.billed_units.search_units == 1 and response.meta.api_version.version == "2"
    assert isinstance(response.id, str) and response.id
    sent = fake.requests[-1]
    assert sent.path == "/v2/rerank" and sent.headers["authorization"] == f"Bearer {KEY}"


def test_client_v1_object_documents_and_echo(fake: CohereFake) -> None:
    client = cohere.Client(api_key=KEY, base_url=fake.url)
    docs = [{"title": "Nevada", "text": DOCS[0]}, {"title": "USA", "text": DOCS[1]}]
    response = client.rerank(
        request_options=NO_RETRIES,
        model="rerank-english-v3.0",
        query=QUERY,
        documents=docs,
        rank_fields=["text"],
        return_documents=True,
    )
    assert [r.index for r in response.results] == _expected([d["text"] for d in docs])
    top = response.results[0]
    assert top.document is not None and top.document.text == docs[top.index]["text"]
    assert response.meta is not None and response.meta.api_version.version == "1"
    plain = client.rerank(
        model="rerank-english-v3.0", query=QUERY, documents=DOCS, request_options=NO_RETRIES
    )
    assert len(plain.results) == 3 and plain.results[0].document is None


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, cohere.BadRequestError), (401, cohere.UnauthorizedError), (429, cohere.TooManyRequestsError)],
)
def test_sdk_raises_its_typed_errors(fake: CohereFake, version: str, status: int, error_type: type) -> None:
    reply = error_reply(status, f"error {status}")
    fake.inject(Status(reply.status, reply.body, {"Retry-After": "3"}))
    client = cohere.ClientV2 if version == "v2" else cohere.Client
    with pytest.raises(error_type) as caught:
        client(api_key=KEY, base_url=fake.url).rerank(
            request_options=NO_RETRIES, model="rerank-v3.5", query=QUERY, documents=DOCS
        )
    assert isinstance(caught.value, ApiError) and caught.value.body == {"message": f"error {status}"}


def test_fake_validation_errors_are_typed_for_the_sdk(fake: CohereFake) -> None:
    with pytest.raises(cohere.BadRequestError) as caught:
        cohere.ClientV2(api_key=KEY, base_url=fake.url).rerank(
            request_options=NO_RETRIES, model="rerank-v3.5", query="  ", documents=DOCS
        )
    assert caught.value.body == {"message": "invalid request: query must not be empty or be only whitespace"}
    with pytest.raises(cohere.UnauthorizedError):
        cohere.ClientV2(api_key="abc", base_url=fake.url).rerank(
            request_options=NO_RETRIES, model="rerank-v3.5", query=QUERY, documents=DOCS
        )
