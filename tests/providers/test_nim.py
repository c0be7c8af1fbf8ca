"""NIM adapter: NIM's own body (query and passage objects, no top-n), logits, the hosted endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.domain import Document, Truncation
from rerankd.providers.base import ProviderCall
from rerankd.providers.http import HttpClient
from rerankd.providers.nim import NimProvider

from tests.fakes.base import fake_score
from tests.fakes.nim import MODEL, NimFake

OFFLINE = HttpClient()
DOCS = [Document("cats purr"), Document("dogs bark"), Document("a cat naps")]


def provider(url: str = "http://nim.test:8000", http: HttpClient | None = None, **fields: Any) -> NimProvider:
    return NimProvider("nim", ProviderConfig(kind="nim", base_url=url, **fields), http or OFFLINE)


def call(**kwargs: Any) -> ProviderCall:
    return ProviderCall(**{"model": MODEL, "query": "cat", "documents": DOCS, "timeout": 5.0, **kwargs})


@pytest.fixture(scope="module")
def running() -> Iterator[NimFake]:
    with NimFake(max_tokens=20) as fake:
        yield fake  # type: ignore[misc]


def test_nims_body_and_nothing_else() -> None:
    request = provider().build_request(call(top_n=1))
    assert request.url == "http://nim.test:8000/v1/ranking" and "authorization" not in request.headers
    assert json.loads(request.body) == {
        "model": MODEL,
        "query": {"text": "cat"},
        "passages": [{"text": "cats purr"}, {"text": "dogs bark"}, {"text": "a cat naps"}],
        "truncate": "END",
    }
    assert json.loads(provider().build_request(call(truncation=Truncation.NONE)).body)["truncate"] == "NONE"
    hosted = "https://ai.api.nvidia.com/v1/retrieval/nvidia/llama-3_2-nv-rerankqa-1b-v2/reranking"
    keyed = provider(hosted, api_key="nvapi-0123456789abcdefghij").build_request(call())
    assert keyed.url == hosted and keyed.headers["authorization"] == "Bearer nvapi-0123456789abcdefghij"


async def test_top_n_is_cut_here_and_logits_activated(fake: NimFake, http: HttpClient) -> None:
    result = await provider(fake.url, http).rerank(call(top_n=2))
    expected = sorted(range(3), key=lambda i: -fake_score("cat", DOCS[i].text))[:2]
    assert [s.index for s in result.scores] == expected
    assert result.scores[0].score == pytest.approx(fake_score("cat", DOCS[expected[0]].text))
    assert result.usage.total_tokens > 0 and "top_n" not in fake.requests[-1].json()


async def test_over_long_pairs_with_truncation_none(fake: NimFake, http: HttpClient) -> None:
    with pytest.raises(errors.InvalidArgument, match="exceeds maximum allowed token size 20"):
        await provider(fake.url, http).rerank(
            call(documents=[Document("w " * 30)], truncation=Truncation.NONE)
        )
    assert (await provider(fake.url, http).rerank(call(documents=[Document("w " * 30)]))).scores
