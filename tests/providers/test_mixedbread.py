"""Mixedbread adapter: the request it builds; against the fake through rerankd's client."""

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
from rerankd.providers.mixedbread import MixedbreadProvider

from tests.fakes.mixedbread import API_KEY, DEFAULT_MODEL, MixedbreadFake

OFFLINE = HttpClient()
DOCS = [Document("", fields={"title": "cats", "body": "purr"}), Document("dogs bark")]


def provider(url: str | None = None, http: HttpClient | None = None) -> MixedbreadProvider:
    config = ProviderConfig(kind="mixedbread", base_url=url, api_key=API_KEY)
    return MixedbreadProvider("mxb", config, http or OFFLINE)


def call(**kwargs: Any) -> ProviderCall:
    return ProviderCall(
        **{"model": DEFAULT_MODEL, "query": "cat", "documents": DOCS, "timeout": 5.0, **kwargs}
    )


@pytest.fixture(scope="module")
def running() -> Iterator[MixedbreadFake]:
    with MixedbreadFake() as fake:
        yield fake  # type: ignore[misc]


def test_request_names() -> None:
    request = provider().build_request(call(top_n=1, rank_fields=("title", "body")))
    assert request.url == "https://api.mixedbread.com/v1/reranking"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert json.loads(request.body) == {
        "model": DEFAULT_MODEL,
        "query": "cat",
        "input": ["title: cats\nbody: purr", ""],
        "return_input": False,
        "top_k": 1,
    }
    with pytest.raises(errors.InvalidArgument):
        provider().build_request(call(truncation=Truncation.NONE))


async def test_against_the_fake(fake: MixedbreadFake, http: HttpClient) -> None:
    result = await provider(fake.url, http).rerank(call(documents=[Document("cat naps"), Document("dog")]))
    assert [s.index for s in result.scores] == [0, 1] and result.usage.total_tokens == 5
    assert "top_k" not in fake.requests[-1].json()  # all results: no top_k sent
