"""Passages for hosted providers (rerankd.providers.passages), through the real gRPC server against
the fake TEI server cutting pairs at 200 tokens as TEI does: a document whose relevant sentence lies
past the cut ranks last as one text and first as windows; windows batched by TEI's batch size,
offsets mapped back, usage counting the windows sent; the two ways of counting tokens."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator

import pytest
from google.protobuf import struct_pb2
from grpc import StatusCode
from grpc.aio import AioRpcError
from rerankd.config import ProviderConfig, Settings
from rerankd.passages import Passages
from rerankd.providers.http import HttpClient
from rerankd.providers.passages import CharacterCounter, PassageProvider, default_counter
from rerankd.providers.registry import ProviderContext, create_provider
from rerankd.providers.tei import TeiProvider
from rerankd.server import App
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.conftest import running_app, stub_for
from tests.examples import FRANCE_QUERY
from tests.fakes.tei import API_KEY, TeiFake

SENTENCE = "Paris is the capital of France."
_WORDS = ["the", "gardener", "waters", "tomato", "seedlings", "every", "morning", "bees", "beans"]
CUT = 200  # the fake TEI's max input length, in words
BATCH = 8  # its max client batch size
WINDOWS = {"tokens": 128, "stride": 32}


def filler(words: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(words)) + "."


LONG = f"{filler(600, 1)} {SENTENCE} {filler(400, 2)}"  # the sentence starts at word 601
DOCS = ["Berlin is the capital of Germany.", LONG, "Madrid is the capital of Spain."]


@pytest.fixture(scope="module")
def tei() -> Iterator[TeiFake]:
    with TeiFake(max_client_batch_size=BATCH, max_input_length=CUT) as fake:
        yield fake  # type: ignore[misc]


def _tei(url: str, model: str, **options: object) -> dict[str, object]:
    options = {"max_client_batch_size": BATCH, "max_input_length": CUT, **options}
    return {"kind": "tei", "base_url": url, "api_key": API_KEY, "models": [model], "options": options}


@pytest.fixture(scope="module")
async def app(tei: TeiFake) -> AsyncIterator[App]:
    providers = {
        "tei": _tei(tei.url, "reranker"),
        "tei-long": _tei(tei.url, "reranker-long", passages=WINDOWS),
    }
    async with running_app(providers=providers, local_enabled=False) as running:
        yield running


@pytest.fixture
async def stub(app: App, tei: TeiFake) -> AsyncIterator[pb_grpc.RerankServiceStub]:
    tei.clear()
    async with stub_for(app) as client:
        yield client


def _request(model: str, parameters: dict[str, object] | None = None) -> pb.RerankRequest:
    request = pb.RerankRequest(model=model, query=FRANCE_QUERY, documents=[pb.Document(text=d) for d in DOCS])
    if parameters is not None:
        struct = struct_pb2.Struct()
        struct.update(parameters)
        request.parameters.CopyFrom(struct)
    return request


def _sent(tei: TeiFake) -> list[list[str]]:
    return [request.json()["texts"] for request in tei.requests]


async def test_the_late_sentence_is_cut_off_without_passages(
    stub: pb_grpc.RerankServiceStub, tei: TeiFake
) -> None:
    reply = await stub.Rerank(_request("reranker"), timeout=30)
    assert reply.results[-1].index == 1
    assert _sent(tei) == [DOCS] and not any(r.HasField("passage") for r in reply.results)


async def test_with_passages_the_long_document_ranks_first_with_offsets_and_honest_usage(
    stub: pb_grpc.RerankServiceStub, tei: TeiFake
) -> None:
    reply = await stub.Rerank(_request("reranker-long"), timeout=30)
    assert reply.results[0].index == 1
    won = reply.results[0].passage
    start = LONG.index(SENTENCE)
    assert won.start <= start and start + len(SENTENCE) <= won.end and won.count > 5
    sent = _sent(tei)
    texts = [text for batch in sent for text in batch]
    assert all(len(batch) <= BATCH for batch in sent) and len(sent) == -(-len(texts) // BATCH)
    assert len(texts) == won.count + 2 and reply.usage.documents == len(texts)  # billed: the windows
    assert LONG[won.start : won.end] in texts  # the window is the document's own characters
    assert all(len(FRANCE_QUERY.split()) + len(text.split()) <= CUT for text in texts)  # none cut by TEI
    windows = [text for text in texts if text in LONG]
    assert any(LONG.startswith(w) for w in windows) and any(SENTENCE in w for w in windows)  # any order
    assert [r.passage.count for r in reply.results[1:]] == [1, 1]
    assert all("passages" not in request.json() for request in tei.requests)


async def test_per_request_passages_on_a_provider_without_them_and_off_on_one_with_them(
    stub: pb_grpc.RerankServiceStub, tei: TeiFake
) -> None:
    asked = await stub.Rerank(_request("reranker", {"passages": WINDOWS}), timeout=30)
    assert asked.results[0].index == 1 and asked.results[0].passage.count > 5
    assert all("passages" not in request.json() for request in tei.requests)
    tei.clear()
    off = await stub.Rerank(_request("reranker-long", {"passages": False}), timeout=30)
    assert off.results[-1].index == 1 and _sent(tei) == [DOCS]
    tei.clear()
    first = await stub.Rerank(
        _request("reranker-long", {"passages": {**WINDOWS, "pool": "first"}}), timeout=30
    )
    (texts,) = _sent(tei)
    assert len(texts) == 3 and first.results[-1].index == 1 and first.results[-1].passage.count == 1


async def test_malformed_passages_are_invalid_argument(stub: pb_grpc.RerankServiceStub, tei: TeiFake) -> None:
    with pytest.raises(AioRpcError) as caught:
        await stub.Rerank(_request("reranker", {"passages": {"tokens": 2}}), timeout=30)
    assert caught.value.code() == StatusCode.INVALID_ARGUMENT
    assert "parameters.passages" in (caught.value.details() or "") and not tei.requests


async def test_list_models_shows_what_a_hosted_provider_knows(stub: pb_grpc.RerankServiceStub) -> None:
    listed = await stub.ListModels(pb.ListModelsRequest(), timeout=10)
    (target,) = next(m for m in listed.models if m.name == "reranker").targets
    assert (target.kind, target.family, target.max_length, target.source) == ("tei", "", CUT, "")
    assert target.max_documents == BATCH
    (long_target,) = next(m for m in listed.models if m.name == "reranker-long").targets
    assert long_target.max_documents == 0  # batched by the passage wrapper, not chunked by the router


def test_a_malformed_passages_option_fails_at_build() -> None:
    ctx = ProviderContext(settings=Settings(), http=HttpClient())
    config = ProviderConfig.model_validate(_tei("http://127.0.0.1:9", "m", passages={"pool": "best"}))
    with pytest.raises(ValueError, match=r"provider 'x': options\.passages pool must be one of"):
        create_provider("x", config, ctx)
    built = create_provider("x", ProviderConfig.model_validate(_tei("http://127.0.0.1:9", "m")), ctx)
    assert isinstance(built, PassageProvider) and built.kind == "tei" and built.passages is None


@pytest.mark.parametrize("counter", [default_counter(), CharacterCounter()], ids=["tokenizer", "characters"])
def test_windows_overlap_by_the_stride_in_either_count(counter: object) -> None:
    passages = Passages(tokens=64, stride=16)
    provider = PassageProvider(
        TeiProvider("x", ProviderConfig(kind="tei", base_url="http://tei.test"), HttpClient()),
        passages,
        counter,
    )  # type: ignore[arg-type]
    windows = provider.windows([LONG, "short one"], passages, None)
    mine = [w for w in windows if w.document == 0]
    assert windows[-1].document == 1 and (windows[-1].start, windows[-1].end) == (0, len("short one"))
    offsets = counter.offsets(LONG, 10_000)  # type: ignore[attr-defined]
    starts = [begin for begin, _ in offsets]
    ends = [end for _, end in offsets]
    assert [starts.index(w.start) for w in mine[:3]] == [0, 48, 96]  # a window every 64 - 16 tokens
    assert [ends.index(w.end) for w in mine[:2]] == [63, 111]
    assert mine[-1].end == len(LONG) and len(mine) == 1 + -(-(len(offsets) - 64) // 48)


async def test_a_list_longer_than_the_providers_batch(stub: pb_grpc.RerankServiceStub, tei: TeiFake) -> None:
    docs = [f"Town number {i} is the capital of region {i}." for i in range(20)]
    docs[13] = LONG
    request = pb.RerankRequest(
        model="reranker-long", query=FRANCE_QUERY, documents=[pb.Document(text=d) for d in docs]
    )
    configured = await stub.Rerank(request, timeout=30)  # the wrapper batches, the passage survives
    assert configured.results[0].index == 13 and configured.results[0].passage.count > 5
    assert all(len(texts) <= BATCH for texts in _sent(tei)) and len(configured.results) == 20
    tei.clear()
    request.model = "reranker"
    request.parameters.update({"passages": WINDOWS})  # chunked by the router first, then split
    asked = await stub.Rerank(request, timeout=30)
    assert asked.results[0].index == 13 and len(asked.results) == 20
    assert all(len(texts) <= BATCH for texts in _sent(tei))
    tei.clear()
    request.model = "reranker-long"
    request.parameters.update({"passages": False})
    off = await stub.Rerank(request, timeout=30)
    assert off.results[-1].index == 13 and sorted(len(t) for t in _sent(tei)) == [4, 8, 8]  # concurrent
