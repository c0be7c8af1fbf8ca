"""vLLM adapter: the request it builds, then calls against the fake (vLLM's guarded /v1 path)."""

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
from rerankd.providers.vllm import VllmProvider

from tests.fakes.vllm import API_KEY, MODEL, VllmFake
from tests.providers.replies import reply

OFFLINE = HttpClient()
DOCS = [Document("cats purr"), Document("dogs bark loudly " * 400), Document("a cat naps")]


def provider(url: str = "http://vllm.test", http: HttpClient | None = None, **fields: Any) -> VllmProvider:
    return VllmProvider("vllm", ProviderConfig(kind="vllm", base_url=url, **fields), http or OFFLINE)


def call(**kwargs: Any) -> ProviderCall:
    return ProviderCall(**{"model": MODEL, "query": "cat", "documents": DOCS, "timeout": 5.0, **kwargs})


@pytest.fixture(scope="module")
def running() -> Iterator[VllmFake]:
    with VllmFake(max_model_len=512) as fake:
        yield fake  # type: ignore[misc]


def test_request_and_truncation() -> None:
    request = provider(api_key=API_KEY).build_request(call(top_n=9))
    assert request.url == "http://vllm.test/v1/rerank"  # the path --api-key guards
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    body = json.loads(request.body)
    assert body == {
        "model": MODEL,
        "query": "cat",
        "documents": [d.text for d in DOCS],
        "truncate_prompt_tokens": -1,
        "top_n": 3,
    }
    none = json.loads(provider().build_request(call(truncation=Truncation.NONE)).body)
    assert (
        "truncate_prompt_tokens" not in none
        and "authorization" not in provider().build_request(call()).headers
    )
    with pytest.raises(errors.InvalidArgument) as caught:
        provider().build_request(call(max_tokens_per_doc=64))
    assert caught.value.field_violations[0][0] == "max_tokens_per_doc"


def test_every_error_body_vllm_writes_is_read() -> None:
    p = provider()
    nested = {"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "code": 404}}
    assert p.error_message(reply(nested, 404)) == "The model `x` does not exist."
    assert p.error_message(reply({"error": "Unauthorized"}, 401)) == "Unauthorized"
    assert p.error_message(reply({"object": "error", "message": "old flat form"}, 400)) == "old flat form"


async def test_truncation_reaches_vllm(fake: VllmFake, http: HttpClient) -> None:
    p = provider(fake.url, http, api_key=API_KEY)
    result = await p.rerank(call())  # END: the long document is cut to max_model_len
    assert sorted(s.index for s in result.scores) == [0, 1, 2] and result.usage.total_tokens > 0
    with pytest.raises(errors.InvalidArgument, match="maximum context length is 512"):
        await p.rerank(call(truncation=Truncation.NONE))
    with pytest.raises(errors.ProviderMisconfigured):
        await provider(fake.url, http, api_key="wrong-key-0123456789").rerank(call())
