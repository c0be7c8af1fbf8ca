"""One contract for every provider adapter, run against its fake: discovered from tests/fakes/*.py.

Every module in tests.fakes with a module-level `CONTRACT` (or `CONTRACT_<VARIANT>`) FakeSpec is
picked up, so a new provider joins this suite by writing its fake. The adapter is built the way
the server builds it (registry.create_provider from a YAML-shaped mapping) and driven through the
same cases: success, top_n, object documents with rank_fields, each error status, malformed JSON,
a slow answer past the call's timeout, a connection reset and the document limit. No API key may
appear in any error message, even when the provider's own error text echoes it.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from rerankd import errors
from rerankd.config import ProviderConfig, Settings
from rerankd.domain import Document
from rerankd.providers.base import Provider, ProviderCall, ProviderResult
from rerankd.providers.http import HttpClient
from rerankd.providers.registry import ProviderContext, create_provider

import tests.fakes
from tests.fakes.base import FakeProvider, FakeSpec, Hang, Malformed, Reset, Status, fake_score

QUERY = "capital of france"
# Query-word overlap 3, 0, 2, 1 and 0 of 3: the fake's order is unambiguous, whatever the fake.
TEXTS = [
    "Paris is the capital of France",
    "Bananas are yellow",
    "Lyon is a city of France",
    "Madrid is a capital",
    "Oslo",
]
TITLES = ["Berlin", "Paris capital of France", "Lyon in France", "a capital city"]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _discover() -> list[Any]:
    found = []
    for info in pkgutil.iter_modules(tests.fakes.__path__):
        if info.name == "base" or info.name.startswith(("test_", "_")):
            continue
        module = importlib.import_module(f"{tests.fakes.__name__}.{info.name}")
        for attr, value in vars(module).items():
            if attr.startswith("CONTRACT") and isinstance(value, FakeSpec):
                variant = attr.removeprefix("CONTRACT").strip("_").lower()
                found.append(pytest.param(value, id=f"{info.name}-{variant}" if variant else info.name))
    return sorted(found, key=lambda param: param.id)


SPECS = _discover()


@dataclass
class Target:
    spec: FakeSpec
    fake: FakeProvider
    provider: Provider
    secret: str

    async def rerank(self, documents: list[Document] | None = None, **kwargs: Any) -> ProviderResult:
        docs = documents if documents is not None else [Document(text) for text in TEXTS]
        fields: dict[str, Any] = {"timeout": 5.0, "headers": {"traceparent": TRACEPARENT}, **kwargs}
        return await self.provider.rerank(
            ProviderCall(model=self.spec.model, query=QUERY, documents=docs, **fields)
        )


@pytest.fixture(scope="module", params=SPECS)
def running(request: pytest.FixtureRequest) -> Iterator[tuple[FakeSpec, FakeProvider]]:
    spec: FakeSpec = request.param
    with spec.fake() as fake:
        yield spec, fake  # type: ignore[misc]


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    await client.aclose()


@pytest.fixture
async def target(running: tuple[FakeSpec, FakeProvider], http: HttpClient) -> AsyncIterator[Target]:
    spec, fake = running
    fake.clear()
    mapping = spec.config(fake.url)
    provider = create_provider(spec.kind, ProviderConfig(**mapping), ProviderContext(Settings(), http))
    try:
        yield Target(spec, fake, provider, str(mapping.get("api_key") or ""))
    finally:
        await provider.aclose()


def _best_first(result: ProviderResult) -> list[int]:
    return [s.index for s in sorted(result.scores, key=lambda s: -s.score)]


def _expected(texts: list[str]) -> list[int]:
    return sorted(range(len(texts)), key=lambda i: -fake_score(QUERY, texts[i]))


async def test_success_scores_every_document(target: Target) -> None:
    result = await target.rerank()
    assert sorted(s.index for s in result.scores) == list(range(len(TEXTS)))
    assert _best_first(result) == _expected(TEXTS)
    assert all(0.0 <= s.score <= 1.0 for s in result.scores)
    assert isinstance(result.model, str) and result.model
    assert result.usage.documents == len(TEXTS)
    assert target.fake.requests[-1].headers.get("traceparent") == TRACEPARENT


async def test_top_n_returns_the_best_n(target: Target) -> None:
    result = await target.rerank(top_n=2)
    assert _best_first(result) == _expected(TEXTS)[:2]


async def test_object_documents_rank_on_the_named_fields(target: Target) -> None:
    docs = [
        Document("", id=f"d{i}", fields={"title": t, "body": "unrelated words"}) for i, t in enumerate(TITLES)
    ]
    result = await target.rerank(docs, rank_fields=("title",))
    assert _best_first(result) == _expected(TITLES)
    both = await target.rerank(docs, rank_fields=("title", "body"))
    assert sorted(s.index for s in both.scores) == list(range(len(TITLES)))
    assert target.provider.capabilities(target.spec.model).object_documents == target.spec.object_documents


@pytest.mark.parametrize(
    ("status", "expected", "retryable"),
    [
        (400, errors.InvalidArgument, False),
        (401, errors.ProviderMisconfigured, False),
        (429, errors.ResourceExhausted, True),
        (500, errors.Unavailable, True),
        (503, errors.Unavailable, True),
    ],
)
async def test_error_statuses_map_by_who_must_act(
    target: Target, status: int, expected: type[errors.RerankError], retryable: bool
) -> None:
    reply = target.spec.error_reply(status, f"request refused for key {target.secret} (code {status})")
    target.fake.inject(Status(reply.status, reply.body, {**reply.headers, "Retry-After": "7"}))
    with pytest.raises(expected) as caught:
        await target.rerank()
    err = caught.value
    assert err.retryable is retryable and err.provider == target.provider.name
    assert err.message.startswith(f"{target.provider.name}:")
    if status == 400:
        assert "request refused for key" in err.message  # the provider's own words reach the caller
    if status == 429:
        assert err.retry_after == 7.0
    if target.secret:
        assert target.secret not in str(err) and target.secret not in repr(target.provider)


async def test_malformed_answer_is_bad_response(target: Target) -> None:
    target.fake.inject(Malformed())
    with pytest.raises(errors.BadResponse) as caught:
        await target.rerank()
    assert caught.value.retryable and caught.value.provider == target.provider.name


async def test_slow_answer_past_the_timeout_is_deadline_exceeded(target: Target) -> None:
    target.fake.inject(Hang(2.0))
    started = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded) as caught:
        await target.rerank(timeout=0.2)
    assert time.monotonic() - started < 1.5 and caught.value.retryable


async def test_connection_reset_is_unavailable(target: Target) -> None:
    target.fake.inject(Reset())
    with pytest.raises(errors.Unavailable) as caught:
        await target.rerank()
    assert caught.value.retryable


async def test_document_limit_is_declared_and_enforced(target: Target) -> None:
    limit = target.spec.max_documents
    if limit is None:
        pytest.skip("the provider documents no per-call document limit")
    declared = target.provider.capabilities(target.spec.model).max_documents
    assert declared is not None and declared <= limit  # the router never sends more than allowed
    with pytest.raises(errors.InvalidArgument):
        await target.rerank([Document(f"document {i}") for i in range(limit + 1)])
