"""TEI adapter: the pure request builder and parser, then real calls against the fake TEI server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.domain import Document, Truncation
from rerankd.providers.base import ProviderCall
from rerankd.providers.http import HttpClient, HttpReply
from rerankd.providers.tei import TeiProvider

from tests.fakes.base import Delay, Status, fake_score
from tests.fakes.tei import API_KEY, CONTRACT, TeiFake, error_reply

MODEL = "BAAI/bge-reranker-base"
PURE_HTTP = HttpClient()  # never sends: for the pure builder and parser tests
DOCS = [Document("cats purr softly"), Document("dogs bark"), Document("a cat chased a dog")]


def provider(url: str = "http://tei.test", http: HttpClient | None = None, **settings: object) -> TeiProvider:
    config = ProviderConfig(kind="tei", base_url=url, **settings)  # type: ignore[arg-type]
    return TeiProvider("tei", config, http or PURE_HTTP)


def call(**kwargs: object) -> ProviderCall:
    fields: dict[str, object] = {"model": MODEL, "query": "cat", "documents": DOCS, **kwargs}
    return ProviderCall(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def running() -> Iterator[TeiFake]:
    with TeiFake(max_client_batch_size=4) as fake:
        yield fake  # type: ignore[misc]


def test_request_body_and_optional_key() -> None:
    request = provider().build_request(call(headers={"traceparent": "00-abc"}))
    assert request.url == "http://tei.test/rerank"
    assert json.loads(request.body) == {
        "query": "cat",
        "texts": [d.text for d in DOCS],
        "truncate": True,
        "raw_scores": False,
        "return_text": False,
    }
    assert "authorization" not in request.headers and request.headers["traceparent"] == "00-abc"
    keyed = provider(api_key=API_KEY).build_request(call())
    assert keyed.headers["authorization"] == f"Bearer {API_KEY}"


def test_truncation_parameters_and_rank_fields() -> None:
    docs = [Document(fields={"title": "T", "body": "B"})]
    parameters = {"truncation_direction": "Left", "raw_scores": True}
    request = provider().build_request(
        call(documents=docs, rank_fields=("title", "body"), truncation=Truncation.NONE, parameters=parameters)
    )
    body = json.loads(request.body)
    assert body["texts"] == ["title: T\nbody: B"]  # domain.render_text, documented there
    assert body["truncate"] is False
    assert body["truncation_direction"] == "Left" and body["raw_scores"] is True
    with pytest.raises(errors.InvalidArgument, match="parameters"):  # mapped fields are not overridable
        provider().build_request(call(parameters={"truncate": True}))


def test_refusals() -> None:
    with pytest.raises(errors.InvalidArgument):
        provider().build_request(call(max_tokens_per_doc=10))
    with pytest.raises(errors.ProviderMisconfigured):
        TeiProvider("tei", ProviderConfig(kind="tei"), PURE_HTTP)


def test_capabilities_from_options() -> None:
    assert provider().capabilities(MODEL).max_documents == 32
    tuned = provider(options={"max_client_batch_size": 8, "max_input_length": 512}).capabilities(MODEL)
    assert tuned.max_documents == 8 and tuned.max_tokens == 512 and not tuned.object_documents


def test_parse_bare_array_trims_top_n_and_reads_tokens() -> None:
    ranks = [{"index": 1, "score": 0.8}, {"index": 0, "score": 0.5}, {"index": 2, "score": 0.1}]
    reply = HttpReply(200, {"x-compute-tokens": "42"}, json.dumps(ranks).encode())
    result = provider().parse_response(call(top_n=2), reply)
    assert [(s.index, s.score) for s in result.scores] == [(1, 0.8), (0, 0.5)]
    assert result.usage.total_tokens == 42 and result.model == MODEL
    with pytest.raises(errors.BadResponse):
        provider().parse_response(call(), HttpReply(200, {}, b'{"index": 0}'))


def test_error_message_reads_error_type() -> None:
    reply = error_reply(422, "batch size 40 > maximum allowed batch size 32")
    text = provider().error_message(HttpReply(422, {}, json.dumps(reply.body).encode()))
    assert text == "Validation: batch size 40 > maximum allowed batch size 32"


async def test_rerank_against_fake(fake: TeiFake, http: HttpClient) -> None:
    result = await provider(fake.url, http, api_key=API_KEY).rerank(call(top_n=2))
    expected = sorted(range(3), key=lambda i: fake_score("cat", DOCS[i].text), reverse=True)[:2]
    assert [s.index for s in result.scores] == expected
    assert result.usage.total_tokens > 0 and result.usage.documents == 3


async def test_wrong_key_is_provider_misconfigured(fake: TeiFake, http: HttpClient) -> None:
    with pytest.raises(errors.ProviderMisconfigured) as info:
        await provider(fake.url, http, api_key="tei-wrong-key-000000").rerank(call())
    assert "tei-wrong-key-000000" not in info.value.message and "401" in info.value.message


async def test_over_batch_size_is_refused_by_the_fake(fake: TeiFake, http: HttpClient) -> None:
    docs = [Document(f"doc {i}") for i in range(5)]
    with pytest.raises(errors.InvalidArgument) as info:
        await provider(fake.url, http, api_key=API_KEY).rerank(call(documents=docs))
    assert info.value.message == "tei: Validation: batch size 5 > maximum allowed batch size 4"


async def test_overloaded_unhealthy_and_slow(fake: TeiFake, http: HttpClient) -> None:
    tei = provider(fake.url, http, api_key=API_KEY)
    overloaded = error_reply(429, "Model is overloaded")
    fake.inject(Status(429, overloaded.body), Status(503, error_reply(503, "unhealthy").body), Delay(0.5))
    with pytest.raises(errors.ResourceExhausted):
        await tei.rerank(call())
    with pytest.raises(errors.Unavailable) as unavailable:
        await tei.rerank(call())
    assert unavailable.value.message == "tei: Unhealthy: unhealthy"
    with pytest.raises(errors.DeadlineExceeded):
        await tei.rerank(call(timeout=0.1))


def test_contract_spec_points_at_this_adapter() -> None:
    config = ProviderConfig(**CONTRACT.config("http://127.0.0.1:1"))
    assert config.kind == CONTRACT.kind == TeiProvider.kind
    assert provider().capabilities(CONTRACT.model).max_documents == CONTRACT.max_documents
