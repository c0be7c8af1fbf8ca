"""The official `mixedbread` SDK (Stainless-generated) against the fake: answers and error statuses.

Pointed at the fake with `Mixedbread(api_key=..., base_url=...)`, retries off; `client.rerank`
posts /v1/reranking and parses RerankResponse; errors become the SDK's status exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator

import mixedbread
import pytest

from tests.fakes.base import Status, fake_score
from tests.fakes.mixedbread import API_KEY, DEFAULT_MODEL, MixedbreadFake, error_reply

QUERY = "bread baking"
DOCS = ["Baking bread at home.", "The stock market fell.", "Sourdough bread needs time."]


@pytest.fixture(scope="module")
def running() -> Iterator[MixedbreadFake]:
    with MixedbreadFake() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def client(running: MixedbreadFake) -> mixedbread.Mixedbread:
    running.clear()
    return mixedbread.Mixedbread(api_key=API_KEY, base_url=running.url, max_retries=0)


def test_sdk_parses_the_answer(running: MixedbreadFake, client: mixedbread.Mixedbread) -> None:
    answer = client.rerank(model=DEFAULT_MODEL, query=QUERY, input=DOCS, top_k=2, return_input=True)
    expected = sorted(range(3), key=lambda i: -fake_score(QUERY, DOCS[i]))[:2]
    assert [d.index for d in answer.data] == expected and answer.data[0].input == DOCS[expected[0]]
    assert answer.data[0].score == fake_score(QUERY, DOCS[expected[0]])
    assert answer.usage.total_tokens > 0 and answer.top_k == 2 and answer.model == DEFAULT_MODEL
    sent = running.requests[-1]
    assert sent.path == "/v1/reranking" and sent.headers["authorization"] == f"Bearer {API_KEY}"


def test_sdk_objects_with_rank_fields(client: mixedbread.Mixedbread) -> None:
    items = [{"title": "bread baking tips"}, {"title": "cars"}]
    answer = client.rerank(query=QUERY, input=items, rank_fields=["title"])
    assert [d.index for d in answer.data] == [0, 1]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, mixedbread.AuthenticationError),
        (422, mixedbread.UnprocessableEntityError),
        (429, mixedbread.RateLimitError),
        (500, mixedbread.InternalServerError),
    ],
)
def test_sdk_maps_error_statuses(
    running: MixedbreadFake, client: mixedbread.Mixedbread, status: int, error: type[Exception]
) -> None:
    reply = error_reply(status, f"refused with {status}")
    running.inject(Status(reply.status, reply.body))
    with pytest.raises(error):
        client.rerank(query=QUERY, input=DOCS)
