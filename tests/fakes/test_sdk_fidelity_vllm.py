"""Cohere's official SDK against the vLLM fake, as vLLM documents: its rerank API takes Cohere clients.

vLLM's docs and its own example (../shared/engines.md, section 1) point
`cohere.Client(base_url=...)` (POST /v1/rerank) and `cohere.ClientV2` (POST /v2/rerank) at a vLLM
server; both must parse the fake's answers.
"""

from __future__ import annotations

from collections.abc import Iterator

import cohere
import pytest

from tests.fakes.base import fake_score
from tests.fakes.vllm import API_KEY, MODEL, VllmFake

QUERY = "What is the capital of France?"
DOCS = ["The capital of France is Paris.", "Reranking is fun!", "vLLM is an open-source framework."]


@pytest.fixture(scope="module")
def running() -> Iterator[VllmFake]:
    with VllmFake() as fake:
        yield fake  # type: ignore[misc]


def test_cohere_v1_and_v2_clients_parse_the_answer(running: VllmFake) -> None:
    expected = sorted(range(3), key=lambda i: -fake_score(QUERY, DOCS[i]))
    for client in (
        cohere.Client(api_key=API_KEY, base_url=running.url),
        cohere.ClientV2(api_key=API_KEY, base_url=running.url),
    ):
        answer = client.rerank(model=MODEL, query=QUERY, documents=DOCS, top_n=2)
        assert [r.index for r in answer.results] == expected[:2]
        assert answer.results[0].relevance_score == fake_score(QUERY, DOCS[expected[0]])
    assert {r.path for r in running.requests} == {"/v1/rerank", "/v2/rerank"}
