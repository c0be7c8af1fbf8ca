"""Infinity adapter: the request it builds, its batch-size option, then calls against the fake."""

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
from rerankd.providers.infinity import InfinityProvider

from tests.fakes.base import fake_score
from tests.fakes.infinity import API_KEY, SERVED, InfinityFake

OFFLINE = HttpClient()
DOCS = [Document("cats purr"), Document("dogs bark"), Document("a cat naps")]


def provider(url: str = "http://inf.test", http: HttpClient | None = None, **fields: Any) -> InfinityProvider:
    config = ProviderConfig(kind="infinity", base_url=url, api_key=API_KEY, **fields)
    return InfinityProvider("infinity", config, http or OFFLINE)


def call(**kwargs: Any) -> ProviderCall:
    return ProviderCall(**{"model": SERVED, "query": "cat", "documents": DOCS, "timeout": 5.0, **kwargs})


@pytest.fixture(scope="module")
def running() -> Iterator[InfinityFake]:
    with InfinityFake(url_prefix="/v1") as fake:
        yield fake  # type: ignore[misc]


def test_request_fields_and_options() -> None:
    request = provider().build_request(call(top_n=2))
    assert request.url == "http://inf.test/rerank"
    assert json.loads(request.body) == {
        "raw_scores": False,
        "model": SERVED,
        "query": "cat",
        "documents": ["cats purr", "dogs bark", "a cat naps"],
        "return_documents": False,
        "top_n": 2,
    }
    assert provider().capabilities(SERVED).max_documents == 2048
    assert provider(options={"max_client_batch_size": 64}).capabilities(SERVED).max_documents == 64
    with pytest.raises(ValueError, match="unknown options"):
        provider(options={"max_batch_size": 64})
    with pytest.raises(errors.InvalidArgument) as caught:
        provider().build_request(call(truncation=Truncation.NONE))
    assert caught.value.field_violations[0][0] == "truncation"


async def test_url_prefix_raw_scores_and_schema_errors(fake: InfinityFake, http: HttpClient) -> None:
    p = provider(f"{fake.url}/v1", http)  # --url-prefix /v1 goes in base_url
    result = await p.rerank(call(top_n=2))
    expected = sorted(range(3), key=lambda i: -fake_score("cat", DOCS[i].text))[:2]
    assert [s.index for s in result.scores] == expected and result.model == SERVED
    raw = await p.rerank(call(parameters={"raw_scores": True}))
    assert min(s.score for s in raw.scores) < 0  # logits, as asked
    with pytest.raises(errors.InvalidArgument, match="documents"):
        await p.rerank(call(documents=[Document("x" * 130_000)]))  # FastAPI's 422, loc + msg only
