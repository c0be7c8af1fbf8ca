"""The official `voyageai` SDK against the fake: it must parse the fake's answers and error shapes.

The SDK is pointed at the fake with `voyageai.Client(base_url=...)`: the base URL includes /v1 and
the SDK appends /rerank (voyageai/api_resources/api_requestor.py). Retries are off (max_retries=0).
The SDK maps 4xx errors from the body's `detail` (handle_error_response) and 5xx by status alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import voyageai
import voyageai.error

from tests.fakes.base import Status, fake_score
from tests.fakes.voyage import VoyageFake, error_reply

KEY = "pa-sdk-key-0123456789abcdef"
DOCS = ["Voyage AI makes rerankers.", "The sea is salty.", "Rerankers from Voyage AI order documents."]
QUERY = "Voyage AI rerankers"


@pytest.fixture(scope="module")
def running() -> Iterator[VoyageFake]:
    with VoyageFake() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def fake(running: VoyageFake) -> VoyageFake:
    running.clear()
    return running


@pytest.fixture
def client(fake: VoyageFake) -> voyageai.Client:
    return voyageai.Client(api_key=KEY, base_url=f"{fake.url}/v1", max_retries=0)


def test_sdk_parses_the_answer(fake: VoyageFake, client: voyageai.Client) -> None:
    result = client.rerank(QUERY, DOCS, model="rerank-2.5", top_k=2)
    expected = sorted(range(3), key=lambda i: -fake_score(QUERY, DOCS[i]))[:2]
    assert [r.index for r in result.results] == expected
    assert result.results[0].relevance_score == fake_score(QUERY, DOCS[expected[0]])
    assert result.results[0].document == DOCS[expected[0]]
    assert result.total_tokens == sum(len(QUERY.split()) + len(d.split()) for d in DOCS)
    sent = fake.requests[-1]
    assert sent.path == "/v1/rerank" and sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json()["truncation"] is True


def test_sdk_default_top_k_is_null_and_accepted(client: voyageai.Client) -> None:
    result = client.rerank(QUERY, DOCS, model="rerank-2-lite", truncation=False)
    assert sorted(r.index for r in result.results) == [0, 1, 2]


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, voyageai.error.InvalidRequestError),
        (401, voyageai.error.AuthenticationError),
        (422, voyageai.error.MalformedRequestError),
        (429, voyageai.error.RateLimitError),
        (500, voyageai.error.ServerError),
        (503, voyageai.error.ServiceUnavailableError),
    ],
)
def test_sdk_raises_its_typed_errors(
    fake: VoyageFake, client: voyageai.Client, status: int, error_type: type[Exception]
) -> None:
    reply = error_reply(status, f"error {status}")
    fake.inject(Status(reply.status, reply.body, {"Retry-After": "2"}))
    with pytest.raises(error_type) as caught:
        client.rerank(QUERY, DOCS, model="rerank-2.5")
    assert caught.value.http_status == status  # type: ignore[attr-defined]
    if status < 500:  # 5xx are mapped by status alone
        assert str(caught.value) == f"error {status}"


def test_fake_limits_reach_the_sdk_as_typed_errors(fake: VoyageFake, client: voyageai.Client) -> None:
    with pytest.raises(voyageai.error.InvalidRequestError) as caught:
        client.rerank(QUERY, [f"doc {i}" for i in range(1001)], model="rerank-2.5")
    assert "at most 1000" in str(caught.value)
    with pytest.raises(voyageai.error.InvalidRequestError):
        client.rerank(QUERY, DOCS, model="rerank-0")
    bad_key = voyageai.Client(api_key="x", base_url=f"{fake.url}/v1", max_retries=0)
    with pytest.raises(voyageai.error.AuthenticationError):
        bad_key.rerank(QUERY, DOCS, model="rerank-2.5")
