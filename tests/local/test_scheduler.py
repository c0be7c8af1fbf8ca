"""The fair scheduler, driven with the real model: order, fairness, the queue bound, failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from rerankd import errors
from rerankd.local.files import bundled_model_dir
from rerankd.local.model import CrossEncoder, Pair
from rerankd.local.scheduler import FairScheduler, QueueFull

from tests.local.support import texts, until


@pytest.fixture(scope="module")
def encoder() -> Iterator[CrossEncoder]:
    yield CrossEncoder(bundled_model_dir(), max_length=256)


def _pairs(encoder: CrossEncoder, count: int, low: int, high: int, seed: int) -> list[Pair]:
    return encoder.encode("old bridges of the capital", texts(count, low, high, seed))


async def test_each_job_gets_its_own_scores_in_its_own_order(encoder: CrossEncoder) -> None:
    jobs = [_pairs(encoder, count, 5, 120, seed) for seed, count in enumerate((9, 1, 14, 4), 1)]
    expected = [[encoder.score_pair(p) for p in pairs] for pairs in jobs]
    scheduler = FairScheduler(encoder.score_pair, workers=2, max_queued=100)
    scheduler.start()
    try:
        results = await asyncio.gather(
            *(scheduler.run(scheduler.admit(len(p)), p, [x.tokens for x in p]) for p in jobs)
        )
    finally:
        scheduler.close()
    assert results == expected  # exact: every pair is scored alone, whatever runs beside it
    assert scheduler.queued == 0 and scheduler.scored == sum(map(len, jobs))


async def test_both_workers_score_pairs_of_one_request(encoder: CrossEncoder) -> None:
    threads: set[str] = set()

    def score(pair: Pair) -> float:
        threads.add(threading.current_thread().name)
        return encoder.score_pair(pair)

    pairs = _pairs(encoder, 24, 40, 60, 11)
    scheduler = FairScheduler(score, workers=2, max_queued=100, name="t")
    scheduler.start()
    try:
        await scheduler.run(scheduler.admit(len(pairs)), pairs, [p.tokens for p in pairs])
    finally:
        scheduler.close()
    assert threads == {"t-0", "t-1"}


async def test_a_small_job_finishes_while_a_big_one_is_queued(encoder: CrossEncoder) -> None:
    big = _pairs(encoder, 40, 100, 120, 21)
    small = _pairs(encoder, 2, 100, 120, 22)
    scheduler = FairScheduler(encoder.score_pair, workers=1, max_queued=1000)
    scheduler.start()
    try:
        big_task = asyncio.create_task(scheduler.run(scheduler.admit(len(big)), big, [p.tokens for p in big]))
        await until(lambda: scheduler.scored >= 1)  # the big job has the worker
        scores = await scheduler.run(scheduler.admit(len(small)), small, [p.tokens for p in small])
        assert scores == [encoder.score_pair(p) for p in small]
        assert not big_task.done()
        assert scheduler.queued > 20  # most of the big job is still waiting
        big_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await big_task
        at_cancel = scheduler.scored
        assert scheduler.queued == 0  # a cancelled job leaves the queue at once
        await asyncio.sleep(0.2)
        assert scheduler.scored <= at_cancel + 1  # only the pair already running was finished
    finally:
        scheduler.close()


async def test_a_small_job_goes_ahead_of_jobs_that_would_finish_after_it(encoder: CrossEncoder) -> None:
    bigs = [_pairs(encoder, 10, 100, 120, 60 + n) for n in range(6)]
    small = _pairs(encoder, 1, 100, 120, 70)
    scheduler = FairScheduler(encoder.score_pair, workers=1, max_queued=1000)
    scheduler.start()
    try:
        tasks = [
            asyncio.create_task(scheduler.run(scheduler.admit(len(b)), b, [p.tokens for p in b]))
            for b in bigs
        ]
        await until(lambda: scheduler.scored >= 3)
        before = scheduler.scored
        await scheduler.run(scheduler.admit(1), small, [small[0].tokens])
        # The pair in progress, then the small job: not a turn behind each of the six big ones.
        assert scheduler.scored - before <= 2
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        scheduler.close()


async def test_a_stream_of_small_jobs_cannot_starve_a_big_one(encoder: CrossEncoder) -> None:
    big = _pairs(encoder, 12, 40, 50, 80)
    small = _pairs(encoder, 1, 40, 50, 81)
    scheduler = FairScheduler(encoder.score_pair, workers=1, max_queued=1000)
    scheduler.start()
    served = 0

    async def stream() -> None:  # always a small job waiting, as soon as one is answered
        nonlocal served
        while True:
            await scheduler.run(scheduler.admit(1), small, [small[0].tokens])
            served += 1

    try:
        big_task = asyncio.create_task(scheduler.run(scheduler.admit(len(big)), big, [p.tokens for p in big]))
        streams = [asyncio.create_task(stream()) for _ in range(3)]
        await asyncio.wait_for(big_task, timeout=60)
        # Under processor sharing the big job gets a quarter of the worker: it would finish after
        # about 3 x 12 small ones. Here the small ones go first while the big one's virtual share
        # grows, then the big one does: a little later than that, never starved.
        assert served <= 2 * 3 * len(big)
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    finally:
        scheduler.close()


async def test_the_queue_is_bounded_and_says_when_to_retry(encoder: CrossEncoder) -> None:
    big = _pairs(encoder, 20, 100, 120, 31)
    scheduler = FairScheduler(encoder.score_pair, workers=1, max_queued=8)
    scheduler.start()
    try:
        # An idle queue takes any request, even one longer than the bound.
        task = asyncio.create_task(scheduler.run(scheduler.admit(len(big)), big, [p.tokens for p in big]))
        await until(lambda: scheduler.scored >= 1)
        with pytest.raises(QueueFull) as caught:
            scheduler.admit(2)
        refusal = caught.value
        assert isinstance(refusal, errors.ResourceExhausted)
        assert refusal.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        # About the queued work divided by the measured rate: 15+ pairs of ~130 tokens on one worker.
        assert refusal.retry_after is not None and 0.1 <= refusal.retry_after <= 60
        assert refusal.retry_after > 0.004 * scheduler.queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with scheduler.admit(2) as admission:  # room again
            assert admission.count == 2
        assert scheduler.queued == 0
    finally:
        scheduler.close()


async def test_a_failing_pair_fails_its_job_only(encoder: CrossEncoder) -> None:
    good = _pairs(encoder, 3, 5, 20, 41)
    bad = [good[0], Pair(ids=np.array([[101, 10**6, 102]], dtype=np.int64), type_ids=good[0].type_ids[:, :3])]
    scheduler = FairScheduler(encoder.score_pair, workers=2, max_queued=100)
    scheduler.start()
    try:
        with pytest.raises(Exception, match=r"(?i)index|gather|out of"):
            await scheduler.run(scheduler.admit(2), bad, [3, 3])
        assert await scheduler.run(scheduler.admit(3), good, [p.tokens for p in good]) == [
            encoder.score_pair(p) for p in good
        ]
    finally:
        scheduler.close()
    assert scheduler.queued == 0


async def test_closing_fails_queued_jobs_with_unavailable(encoder: CrossEncoder) -> None:
    pairs = _pairs(encoder, 30, 100, 120, 51)
    scheduler = FairScheduler(encoder.score_pair, workers=1, max_queued=100)
    scheduler.start()
    task = asyncio.create_task(scheduler.run(scheduler.admit(len(pairs)), pairs, [p.tokens for p in pairs]))
    await until(lambda: scheduler.scored >= 1)
    scheduler.close()
    with pytest.raises(errors.Unavailable):
        await task
    with pytest.raises(errors.Unavailable):
        scheduler.admit(1)
    scheduler.join(10)  # the worker finishes the pair it had and exits
    assert not any(thread.is_alive() for thread in scheduler._threads)


def test_a_request_whose_documents_became_windows_grows_its_admission_within_the_bound() -> None:
    scheduler: FairScheduler[int] = FairScheduler(lambda item: 0.0, workers=1, max_queued=8)
    alone = scheduler.admit(2)
    scheduler.grow(alone, 20)  # its own pairs never block it: an idle queue takes any request
    assert scheduler.queued == 22
    with pytest.raises(QueueFull):
        scheduler.admit(1)
    alone.release()
    assert scheduler.queued == 0
    first, second = scheduler.admit(4), scheduler.admit(2)
    with pytest.raises(QueueFull):
        scheduler.grow(second, 3)  # 4 + 2 + 3 > 8
    scheduler.grow(second, 2)
    assert (scheduler.queued, second.count) == (8, 4)
    first.release()
    second.release()
    assert scheduler.queued == 0
