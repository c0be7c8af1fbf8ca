"""The official `infinity_client` SDK (generated from Infinity's OpenAPI document) against the fake.

The client is pointed at the fake with `AuthenticatedClient(base_url, token)` and calls
`api.default.rerank` (POST /rerank); it must parse the fake's answer into its ReRankResult and
its 422 into HTTPValidationError, as it does for a real server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from infinity_client import AuthenticatedClient
from infinity_client.api.default import rerank
from infinity_client.models import HTTPValidationError, RerankInput, ReRankResult

from tests.fakes.base import fake_score
from tests.fakes.infinity import API_KEY, SERVED, InfinityFake

QUERY = "Where is Munich?"
DOCS = ["Munich is in Germany.", "The sky is blue.", "Munich, a city in Bavaria."]


@pytest.fixture(scope="module")
def running() -> Iterator[InfinityFake]:
    with InfinityFake() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def client(running: InfinityFake) -> Iterator[AuthenticatedClient]:
    running.clear()
    with AuthenticatedClient(base_url=running.url, token=API_KEY) as client:
        yield client


def test_sdk_parses_the_answer(running: InfinityFake, client: AuthenticatedClient) -> None:
    answer = rerank.sync(client=client, body=RerankInput(query=QUERY, documents=DOCS, top_n=2, model=SERVED))
    assert isinstance(answer, ReRankResult)
    expected = sorted(range(3), key=lambda i: -fake_score(QUERY, DOCS[i]))[:2]
    assert [r.index for r in answer.results] == expected
    assert answer.results[0].relevance_score == fake_score(QUERY, DOCS[expected[0]])
    assert answer.model == SERVED and answer.usage.total_tokens > 0
    assert running.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"


def test_sdk_parses_a_schema_error(client: AuthenticatedClient) -> None:
    refused = rerank.sync(client=client, body=RerankInput(query=QUERY, documents=[]))
    assert isinstance(refused, HTTPValidationError) and refused.detail[0].loc[-1] == "documents"
