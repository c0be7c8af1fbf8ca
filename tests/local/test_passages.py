"""Long documents as passages, with the bundled model: the relevant sentence after token 512 wins
with passages and loses without; windows, their overlap, pooling, offsets, the queue counting them.
"""

from __future__ import annotations

import random

import pytest
from google.protobuf import struct_pb2
from grpc import StatusCode
from grpc.aio import AioRpcError
from rerankd.domain import Document
from rerankd.local.files import bundled_model_dir
from rerankd.local.model import CrossEncoder, Passages
from rerankd.local.provider import LocalProvider
from rerankd.providers.base import ProviderCall
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.conftest import running_app, stub_for
from tests.examples import FRANCE_QUERY

_FILLER = (
    "the gardener waters tomato seedlings every morning and the compost heap slowly turns into dark soil"
    " while bees visit the flowering beans and the old apple tree drops leaves on the path"
)
_WORDS = _FILLER.split(" ")
SENTENCE = "Paris is the capital of France."
PASSAGES = {"tokens": 256, "stride": 64, "pool": "max"}


def filler(words: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(words)) + "."


LONG = f"{filler(560, 1)} {SENTENCE} {filler(300, 2)}"  # the sentence starts past token 560
DOCS = ["Berlin is the capital of Germany.", LONG, "Madrid is the capital of Spain."]


def _request(docs: list[str], parameters: dict[str, object] | None = None) -> pb.RerankRequest:
    request = pb.RerankRequest(query=FRANCE_QUERY, documents=[pb.Document(text=d) for d in docs])
    if parameters is not None:
        struct = struct_pb2.Struct()
        struct.update(parameters)
        request.parameters.CopyFrom(struct)
    return request


@pytest.fixture(scope="module")
def encoder() -> CrossEncoder:
    return CrossEncoder(bundled_model_dir(), max_length=512)


def test_the_sentence_lies_past_the_models_512_tokens(encoder: CrossEncoder) -> None:
    tokens = encoder.tokenizer.encode(LONG, add_special_tokens=False)
    start = LONG.index(SENTENCE)
    first = next(i for i, (begin, _) in enumerate(tokens.offsets) if begin >= start)
    assert first > 512 + 40


async def test_with_passages_the_long_document_ranks_first_and_without_it_does_not(
    stub: pb_grpc.RerankServiceStub,
) -> None:
    without = await stub.Rerank(_request(DOCS), timeout=60)
    assert without.results[0].index != 1 and without.results[-1].index == 1
    assert not any(result.HasField("passage") for result in without.results)
    with_passages = await stub.Rerank(_request(DOCS, {"passages": PASSAGES}), timeout=60)
    assert with_passages.results[0].index == 1
    assert with_passages.results[0].relevance_score > 0.5 > with_passages.results[1].relevance_score
    won = with_passages.results[0].passage  # the window that won covers the sentence
    assert won.start <= LONG.index(SENTENCE) and LONG.index(SENTENCE) + len(SENTENCE) <= won.end
    assert won.end - won.start < len(LONG) // 2 and 0 < won.index < won.count
    assert [r.passage.count for r in with_passages.results[1:]] == [1, 1]
    off = await stub.Rerank(_request(DOCS, {"passages": False}), timeout=60)
    assert [r.index for r in off.results] == [r.index for r in without.results]


async def test_passages_configured_per_model_and_turned_off_per_request() -> None:
    options = {"passages": {"tokens": 256, "stride": 64}, "threads": 1}
    providers = {"local": {"kind": "local", "options": options}}
    async with running_app(providers=providers) as app, stub_for(app) as stub:
        on = await stub.Rerank(_request(DOCS), timeout=60)
        assert on.results[0].index == 1
        off = await stub.Rerank(_request(DOCS, {"passages": False}), timeout=60)
        assert off.results[-1].index == 1


async def test_the_winning_passage_is_named_and_every_window_is_a_pair(local_app) -> None:
    provider = local_app.providers["local"]
    assert isinstance(provider, LocalProvider)
    scored_before = provider.scheduler.scored
    call = ProviderCall(
        model="",
        query=FRANCE_QUERY,
        documents=[Document(text=d) for d in DOCS],
        parameters={"passages": PASSAGES},
    )
    result = await provider.rerank(call)
    long = result.scores[1]
    assert long.passage is not None
    assert (
        long.passage.start <= LONG.index(SENTENCE) < LONG.index(SENTENCE) + len(SENTENCE) <= long.passage.end
    )
    assert long.passage.count == provider.scheduler.scored - scored_before - 2  # the short ones: 1 each
    assert long.passage.count >= 4 and result.scores[0].passage.count == 1  # type: ignore[union-attr]
    assert result.usage.documents == 3


def test_windows_overlap_by_the_stride_and_a_4000_token_document_is_21_windows(encoder: CrossEncoder) -> None:
    document = filler(4000, 3)
    doc_tokens = len(encoder.tokenizer.encode(document, add_special_tokens=False).ids)
    pairs = encoder.encode("tomato", [document], passages=Passages(tokens=256, stride=64, limit=100))
    assert len(pairs) == 1 + -(-(doc_tokens - 256) // 192)  # ceil: a window every 192 tokens
    assert doc_tokens >= 4000 and len(pairs) >= 21
    first, second = (p.ids[0].tolist() for p in pairs[:2])
    query = len(encoder.tokenizer.encode("tomato", add_special_tokens=False).ids)
    body = slice(2 + query, -1)  # [CLS] query [SEP] | window | [SEP]
    assert first[body][-64:] == second[body][:64]
    assert max(p.tokens for p in pairs) == 256 + query + 3
    limited = encoder.encode("tomato", [document], passages=Passages(tokens=256, stride=64, limit=5))
    assert len(limited) == 5
    (only,) = encoder.encode("tomato", [document], passages=Passages(tokens=256, stride=64, pool="first"))
    assert only.ids.tolist() == pairs[0].ids.tolist()


@pytest.mark.parametrize(
    "passages",
    [{"tokens": 4}, {"stride": 300}, {"pool": "median"}, {"windows": 3}, "yes", {"tokens": 2.5}],
)
async def test_malformed_passages_are_invalid_argument(
    stub: pb_grpc.RerankServiceStub, passages: object
) -> None:
    with pytest.raises(AioRpcError) as caught:
        await stub.Rerank(_request(DOCS, {"passages": passages}), timeout=30)
    assert caught.value.code() == StatusCode.INVALID_ARGUMENT
    assert "parameters.passages" in (caught.value.details() or "")


@pytest.mark.parametrize(
    ("pool", "expected"),
    [("max", 0.9), ("mean", None), ("first", None)],
)
def test_pools(encoder: CrossEncoder, pool: str, expected: float | None) -> None:
    from rerankd.passages import pool as _pool

    pairs = encoder.encode(FRANCE_QUERY, [LONG], passages=Passages(pool=pool))
    scores = [encoder.score_pair(p) for p in pairs]
    (pooled,) = _pool(pairs, scores, 1, pool)
    want = {"max": max(scores), "mean": sum(scores) / len(scores), "first": scores[0]}[pool]
    assert pooled.score == pytest.approx(want)
    assert pooled.passage is not None and pooled.passage.index == scores.index(max(scores))
    if expected is not None:
        assert pooled.score > 0.5


async def test_offsets_count_code_points_in_the_text_as_sent_and_streams_carry_them(
    stub: pb_grpc.RerankServiceStub, encoder: CrossEncoder
) -> None:
    wide = f"{filler(300, 4)} 🌍 Ça été naïve — {filler(300, 5)} {SENTENCE} {filler(100, 6)}"
    request = _request([DOCS[0], wide], {"passages": PASSAGES})
    answer = await stub.Rerank(request, timeout=60)
    best = answer.results[0]
    assert best.index == 1
    assert wide[best.passage.start : best.passage.end].count(SENTENCE) == 1
    # the window begins and ends at whole words (byte or UTF-16 offsets would land past the emoji's)
    # the window starts and ends at token boundaries counted in code points (byte or UTF-16 offsets
    # would land 9 or 1 past them, after the emoji and accents before it)
    tokens = encoder.tokenizer.encode(wide, add_special_tokens=False).offsets
    first = [begin for begin, _ in tokens].index(best.passage.start)
    last = [end for _, end in tokens].index(best.passage.end)
    assert first > 0 and last - first + 1 <= PASSAGES["tokens"]
    stream = stub.RerankStream(pb.RerankStreamRequest(request=request), timeout=60)
    streamed = [r for m in [m async for m in stream] if m.HasField("results") for r in m.results.results]
    assert [(r.index, r.passage) for r in streamed] == [(r.index, r.passage) for r in answer.results]
