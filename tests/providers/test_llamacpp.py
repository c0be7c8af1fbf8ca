"""llama.cpp adapter: logits activated (or not), truncation accepted, its errors; against the fake."""

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
from rerankd.providers.llamacpp import LlamaCppProvider

from tests.fakes.base import fake_score
from tests.fakes.llamacpp import API_KEY, MODEL, LlamaCppFake, logit

OFFLINE = HttpClient()
DOCS = [Document("cats purr"), Document("dogs bark"), Document("a cat naps")]


def provider(
    url: str = "http://llama.test", http: HttpClient | None = None, **fields: Any
) -> LlamaCppProvider:
    config = ProviderConfig(kind="llamacpp", base_url=url, api_key=API_KEY, **fields)
    return LlamaCppProvider("llama", config, http or OFFLINE)


def call(**kwargs: Any) -> ProviderCall:
    return ProviderCall(**{"model": MODEL, "query": "cat", "documents": DOCS, "timeout": 5.0, **kwargs})


@pytest.fixture(scope="module")
def running() -> Iterator[LlamaCppFake]:
    with LlamaCppFake(ubatch=64) as fake:
        yield fake  # type: ignore[misc]


def test_truncation_either_way_sends_nothing() -> None:
    for truncation in Truncation:
        body = json.loads(provider().build_request(call(truncation=truncation)).body)
        assert body == {"model": MODEL, "query": "cat", "documents": ["cats purr", "dogs bark", "a cat naps"]}


async def test_logits_become_probabilities_unless_raw(fake: LlamaCppFake, http: HttpClient) -> None:
    result = await provider(fake.url, http).rerank(call())
    assert {s.index: s.score for s in result.scores} == pytest.approx(
        {i: fake_score("cat", d.text) for i, d in enumerate(DOCS)}
    )
    raw = await provider(fake.url, http, options={"raw_scores": True}).rerank(call())
    assert {s.index: s.score for s in raw.scores} == pytest.approx(
        {i: logit("cat", d.text) for i, d in enumerate(DOCS)}
    )


async def test_a_pair_past_the_batch_is_its_500(fake: LlamaCppFake, http: HttpClient) -> None:
    with pytest.raises(errors.Unavailable) as caught:
        await provider(fake.url, http).rerank(call(documents=[Document("word " * 100)]))
    assert "server_error: input (104 tokens) is too large to process" in caught.value.message
