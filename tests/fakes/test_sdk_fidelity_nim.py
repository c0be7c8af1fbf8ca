"""NVIDIA's own client, langchain-nvidia-ai-endpoints' NVIDIARerank, against the NIM fake.

NVIDIARerank(base_url=<NIM>/v1) posts `{base_url}/ranking` with {model, query: {text}, passages:
[{text}], truncate} and reads `rankings[].index` / `.logit` (stored raw as relevance_score); it
must parse the fake's answer and the fake must take its body as NIM does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from langchain_core.documents import Document
from langchain_nvidia_ai_endpoints import NVIDIARerank

from tests.fakes.base import fake_score
from tests.fakes.nim import MODEL, NimFake

QUERY = "capital of france"
TEXTS = ["Paris is the capital of France", "bananas", "France capital Paris"]


@pytest.fixture(scope="module")
def running() -> Iterator[NimFake]:
    with NimFake() as fake:
        yield fake  # type: ignore[misc]


def test_nvidia_rerank_parses_the_answer(running: NimFake) -> None:
    running.clear()
    reranker = NVIDIARerank(base_url=f"{running.url}/v1", model=MODEL, top_n=2, truncate="END")
    kept = reranker.compress_documents([Document(page_content=t) for t in TEXTS], QUERY)
    expected = sorted(TEXTS, key=lambda t: -fake_score(QUERY, t))[:2]
    assert [d.page_content for d in kept] == expected
    p = fake_score(QUERY, expected[0])
    assert kept[0].metadata["relevance_score"] == pytest.approx(math.log(p / (1 - p)))  # the raw logit
    sent = running.requests[-1]
    assert sent.path == "/v1/ranking" and sent.json()["truncate"] == "END"
    assert sent.json()["passages"] == [{"text": t} for t in TEXTS]
