"""Azure AI (Cohere deployments) adapter: target URL, bearer key, v1/v2 paths, against the Azure fake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.domain import Document
from rerankd.providers.azure import AzureProvider
from rerankd.providers.base import ProviderCall
from rerankd.providers.http import HttpClient

from tests.fakes.azure import AzureFake
from tests.fakes.base import Status, fake_score

KEY = "az-endpoint-key-0123456789abcdef"
TARGET = "https://my-rerank.eastus2.models.ai.azure.com"
DOCS = [Document("azure cohere rerank"), Document("unrelated text"), Document("cohere on azure")]
OFFLINE = HttpClient()  # for the pure tests: never sends


def provider(url: str | None = TARGET, http: HttpClient | None = None, **options: Any) -> AzureProvider:
    config = ProviderConfig(kind="azure", base_url=url, api_key=KEY, options=options)
    return AzureProvider("azure", config, http or OFFLINE)


def call(**kwargs: Any) -> ProviderCall:
    return ProviderCall(
        **{"model": "rerank-v3.5", "query": "cohere azure", "documents": DOCS, "timeout": 5.0, **kwargs}
    )


@pytest.fixture(scope="module")
def running() -> Iterator[AzureFake]:
    with AzureFake() as fake:
        yield fake  # type: ignore[misc]


def test_target_url_is_required() -> None:
    with pytest.raises(errors.ProviderMisconfigured) as caught:
        provider(None)
    assert "base_url" in caught.value.message


def test_request_is_cohere_on_the_target_url() -> None:
    request = provider().build_request(call(top_n=1))
    assert request.url == f"{TARGET}/v2/rerank"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.body) == {
        "model": "rerank-v3.5",
        "query": "cohere azure",
        "documents": ["azure cohere rerank", "unrelated text", "cohere on azure"],
        "top_n": 1,
    }
    v1 = provider(f"{TARGET}/v1/rerank")
    assert v1.build_request(call()).url == f"{TARGET}/v1/rerank" and v1.capabilities("x").native_rank_fields


async def test_call_against_the_deployment(fake: AzureFake, http: HttpClient) -> None:
    result = await provider(fake.url, http).rerank(call())
    scores = {s.index: s.score for s in result.scores}
    assert scores == {i: fake_score("cohere azure", d.text) for i, d in enumerate(DOCS)}
    assert result.usage.search_units == 1 and result.model == "rerank-v3.5"
    assert fake.requests[-1].path == "/v2/rerank"


async def test_v1_on_a_v3_deployment_ranks_fields_natively(http: HttpClient) -> None:
    docs = [Document("", fields={"title": "azure cohere"}), Document("", fields={"title": "other"})]
    with AzureFake("Cohere-rerank-v3-english") as fake:
        result = await provider(fake.url, http, api_version="v1").rerank(
            call(documents=docs, rank_fields=("title",))
        )
        assert fake.requests[-1].json()["rank_fields"] == ["title"]
    assert result.scores[0].index == 0


async def test_v1_on_a_v35_deployment_is_an_invalid_argument(fake: AzureFake, http: HttpClient) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        await provider(fake.url, http, api_version="v1").rerank(call())
    assert caught.value.reason == "PROVIDER_NOT_FOUND"


async def test_azure_retry_after_ms_is_honoured(fake: AzureFake, http: HttpClient) -> None:
    fake.inject(Status(429, {"message": "rate limit"}, {"retry-after-ms": "1500"}))
    with pytest.raises(errors.ResourceExhausted) as caught:
        await provider(fake.url, http).rerank(call())
    assert caught.value.retry_after == 1.5 and caught.value.retryable
