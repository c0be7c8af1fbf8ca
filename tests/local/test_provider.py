"""The local provider through the gRPC API: deterministic scores under concurrent traffic, each
request's own scores in its own order, fairness, the queue bound, truncation, a model of your own.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rerankd import metrics
from rerankd.local.files import bundled_model_dir
from rerankd.local.provider import LocalProvider
from rerankd.server import App
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.conftest import running_app, stub_for
from tests.examples import FRANCE_BEST, FRANCE_DOCS, FRANCE_QUERY
from tests.local.support import text, texts, until

QUERY = "old bridges and museums of the capital"


def _request(docs: list[str], **fields: object) -> pb.RerankRequest:
    return pb.RerankRequest(query=QUERY, documents=[pb.Document(text=d) for d in docs], **fields)  # type: ignore[arg-type]


def _by_index(reply: pb.RerankResponse) -> list[float]:
    scores = [0.0] * len(reply.results)
    for result in reply.results:
        scores[result.index] = result.relevance_score
    return scores


def _local(app: App) -> LocalProvider:
    provider = app.providers["local"]
    assert isinstance(provider, LocalProvider)
    return provider


async def test_same_request_same_scores_alone_and_under_mixed_concurrent_traffic(
    stub: pb_grpc.RerankServiceStub,
) -> None:
    docs = texts(12, 3, 150, seed=1)
    alone = _by_index(await stub.Rerank(_request(docs), timeout=60))
    # Mixed traffic: other sizes and lengths, and the same documents in other lists and orders.
    others = [
        _request(texts(count, low, high, seed))
        for seed, (count, low, high) in enumerate([(20, 5, 60), (3, 100, 200), (30, 2, 30), (7, 50, 120)], 2)
    ]
    others += [_request(docs[::-1]), _request(docs[3:7] + texts(5, 10, 40, seed=9))]
    calls = [stub.Rerank(r, timeout=120) for r in others]
    again = [stub.Rerank(_request(docs), timeout=120) for _ in range(3)]
    replies = await asyncio.gather(*calls, *again)
    for reply in replies[len(others) :]:
        assert _by_index(reply) == pytest.approx(alone, abs=1e-6, rel=0)
    # Stronger than asked: a document's score does not depend on the rest of its request either.
    assert _by_index(replies[4])[::-1] == pytest.approx(alone, abs=1e-6, rel=0)
    assert _by_index(replies[5])[:4] == pytest.approx(alone[3:7], abs=1e-6, rel=0)


async def test_concurrent_requests_each_get_their_own_scores_in_their_own_order(
    stub: pb_grpc.RerankServiceStub,
) -> None:
    requests = [texts(count, 5, 80, seed=100 + count) for count in (1, 2, 5, 9, 16, 3, 25)]
    solo = {}
    for docs in requests[:3]:  # scores of a few documents each scored in a request of its own
        for doc in docs:
            solo[doc] = (await stub.Rerank(_request([doc]), timeout=60)).results[0].relevance_score
    replies = await asyncio.gather(
        *(stub.Rerank(_request(docs, return_documents=True), timeout=120) for docs in requests)
    )
    for docs, reply in zip(requests, replies, strict=True):
        assert sorted(r.index for r in reply.results) == list(range(len(docs)))
        assert [r.document.text for r in reply.results] == [docs[r.index] for r in reply.results]
        scores = [r.relevance_score for r in reply.results]
        assert scores == sorted(scores, reverse=True)
        assert reply.usage.documents == len(docs)
        for result in reply.results:
            if result.document.text in solo:
                assert result.relevance_score == pytest.approx(solo[result.document.text], abs=1e-6, rel=0)


async def test_a_small_request_finishes_while_a_big_one_is_queued(
    local_app: App, stub: pb_grpc.RerankServiceStub
) -> None:
    scheduler = _local(local_app).scheduler
    big = stub.Rerank(_request(texts(150, 80, 100, seed=7)), timeout=300)
    big_task = asyncio.ensure_future(big)
    started = scheduler.scored
    await until(lambda: scheduler.scored > started)  # the big request is being scored
    reply = await stub.Rerank(
        pb.RerankRequest(query=FRANCE_QUERY, documents=[pb.Document(text=d) for d in FRANCE_DOCS]), timeout=60
    )
    assert reply.results[0].index == FRANCE_BEST
    assert not big_task.done()
    assert scheduler.queued > 100  # the big request is mostly still waiting
    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big_task
    await until(lambda: scheduler.queued == 0, timeout=5)  # cancelled work leaves the queue


async def test_past_the_queue_bound_requests_get_resource_exhausted_with_retry_info() -> None:
    providers = {"local": {"kind": "local", "options": {"threads": 1, "max_queued_pairs": 8}}}
    async with running_app(providers=providers) as app, stub_for(app) as stub:
        scheduler = _local(app).scheduler
        big = stub.Rerank(_request(texts(30, 100, 120, seed=3)), timeout=120)  # an idle queue takes it
        big_task = asyncio.ensure_future(big)
        await until(lambda: scheduler.scored >= 1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Rerank(_request(["one", "two"]), timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue" in (caught.value.details() or "")
        status = rpc_status.from_call(caught.value)
        assert status is not None
        retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert retry, "RESOURCE_EXHAUSTED without RetryInfo"
        info = error_details_pb2.RetryInfo()
        retry[0].Unpack(info)
        assert info.retry_delay.ToTimedelta().total_seconds() >= 0.1
        # What the queue alert reads (deploy/prometheus): the queue's depth, at scrape time, and bound.
        depth = metrics.REGISTRY.get_sample_value("rerankd_local_queue_pairs", {"provider": "local"})
        assert depth is not None and 0 < depth <= 30
        assert (
            metrics.REGISTRY.get_sample_value("rerankd_local_queue_capacity_pairs", {"provider": "local"})
            == 8
        )
        big.cancel()
        with pytest.raises(asyncio.CancelledError):
            await big_task
        await until(lambda: scheduler.queued == 0, timeout=5)
        reply = await stub.Rerank(_request(["one", "two"]), timeout=30)  # room again
        assert len(reply.results) == 2
        assert metrics.REGISTRY.get_sample_value("rerankd_local_queue_pairs", {"provider": "local"}) == 0


async def test_truncation_none_names_the_document_and_max_tokens_per_doc_cuts(
    stub: pb_grpc.RerankServiceStub,
) -> None:
    docs = ["paris is the capital of france and its largest city", text(600, 1), "berlin"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Rerank(_request(docs, truncation=pb.TRUNCATION_NONE), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR))
    assert [v.field for v in bad.field_violations] == ["documents[1]"]
    ended = await stub.Rerank(_request(docs), timeout=30)  # TRUNCATION_END: the long one is cut
    assert len(ended.results) == 3 and ended.usage.total_tokens < 512 + 2 * 40
    cut = _by_index(await stub.Rerank(_request(docs[:1], max_tokens_per_doc=5), timeout=30))
    prefix = _by_index(await stub.Rerank(_request(["paris is the capital of"]), timeout=30))
    assert cut == prefix


async def test_tokenising_and_scoring_run_off_the_event_loop(
    local_app: App, stub: pb_grpc.RerankServiceStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = _local(local_app).encoder
    seen: dict[str, set[str]] = {"encode": set(), "score": set()}
    encode, score = encoder.encode, encoder.score_pair

    def traced_encode(*args: object, **kwargs: object) -> object:
        seen["encode"].add(threading.current_thread().name)
        return encode(*args, **kwargs)  # type: ignore[arg-type]

    def traced_score(pair: object) -> float:
        seen["score"].add(threading.current_thread().name)
        return score(pair)  # type: ignore[arg-type]

    monkeypatch.setattr(encoder, "encode", traced_encode)
    monkeypatch.setattr(_local(local_app).scheduler, "_score", traced_score)
    await stub.Rerank(_request(texts(16, 40, 60, seed=5)), timeout=60)
    loop_thread = threading.current_thread().name
    assert seen["encode"] and loop_thread not in seen["encode"]
    assert all(name.startswith("local-tokenize") for name in seen["encode"])
    assert seen["score"] == {f"local-score-{n}" for n in range(_local(local_app).threads)}


async def test_a_model_directory_of_your_own_is_served_under_its_name(tmp_path: Path) -> None:
    own = tmp_path / "my-reranker"
    own.mkdir()
    for name in ("model.onnx", "tokenizer.json"):
        (own / name).symlink_to(bundled_model_dir() / name)
    providers = {
        "mine": {
            "kind": "local",
            "models": ["my-reranker-v1"],
            "options": {"model_dir": str(own), "max_length": 64},
        }
    }
    async with running_app(providers=providers) as app, stub_for(app) as stub:
        listed = await stub.ListModels(pb.ListModelsRequest(), timeout=10)
        assert "my-reranker-v1" in str(listed)
        docs = ["paris is the capital of france", text(200, 3)]
        mine = await stub.Rerank(_request(docs, model="my-reranker-v1"), timeout=30)
        assert (mine.provider, mine.model) == ("mine", "my-reranker-v1")
        assert mine.usage.total_tokens == 64 + 16  # the long pair cut at 64 tokens; the short one is 16
        default = await stub.Rerank(_request(docs[:1]), timeout=30)
        assert default.provider == "local"
        assert _by_index(mine)[0] == pytest.approx(_by_index(default)[0], abs=1e-6, rel=0)


def test_unknown_options_and_missing_files_are_start_up_errors(tmp_path: Path) -> None:
    from rerankd.config import ProviderConfig, Settings
    from rerankd.local.files import ModelFilesError, resolve_model_dir

    class Ctx:
        settings = Settings()

    with pytest.raises(ValueError, match="unknown options"):
        LocalProvider.create("x", ProviderConfig(kind="local", options={"max_queue": 3}), Ctx())
    with pytest.raises(ModelFilesError, match=r"lacks model\.onnx, tokenizer\.json"):
        resolve_model_dir(tmp_path)
