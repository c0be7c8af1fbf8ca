"""The fair scheduler that keeps every core busy with the pairs of all concurrent requests.

Each request becomes a job of pairs. `workers` threads, one per core, each take one pair at a time
(rerankd.local.model says why a batch of one) from whichever job the policy names, so a request of
500 documents is split into single pairs and never holds the cores for long; a free worker starts
the next pair at once, without waiting for a batch to fill.

The policy follows the Fair Sojourn Protocol (Friedman and Henderson, SIGMETRICS 2003): beside
the real queue the scheduler keeps a virtual processor-sharing system, in which every request in
flight gets an equal share of the tokens the workers actually score; the next pair comes from the
request that finishes first there (requests already finished there come first, in that order). So
a 20-document request goes ahead of the big ones that would finish after it, instead of waiting a
turn behind each of them as under round robin, while a big request keeps receiving its virtual
share and, once it is the one closest to done, goes first: neither a big request can starve small
ones nor a stream of small ones a big one. One departure from the protocol: a request leaves the
virtual system when it is answered (in the protocol it stays until it would have finished under
processor sharing), which keeps closed-loop callers, who send again as soon as they are answered,
from crowding a big request's virtual share. Within a request the longest pairs go first, so its
last pairs, on several workers, finish close together. Work is counted in tokens, which the cost
of a pair follows.

Admission is bounded: pairs admitted but not yet started (reserved ones included) never exceed
`max_queued`, except that a request arriving at an empty queue is always taken (else a request
longer than the bound could never run). Past the bound `QueueFull` (RESOURCE_EXHAUSTED) carries a
retry-after: the queued tokens divided by the measured scoring rate.

A caller that goes away (cancelled, deadline) removes its pairs that have not started, and its job
leaves the virtual system; the pairs running finish and are dropped. Work is done by plain threads,
not by the event loop; results come back to the caller's loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rerankd import errors
from rerankd.errors import QueueFull

T = TypeVar("T")

_MIN_RETRY_AFTER_S = 0.1
_MAX_RETRY_AFTER_S = 60.0
_EWMA = 0.05  # weight of the newest pair in the seconds-per-token estimate


@dataclass(eq=False, slots=True)
class _Virtual:
    """A job in the virtual processor-sharing system."""

    left: float  # tokens it still has to receive there
    finished: int | None = None  # its rank among the jobs that finished there


@dataclass(eq=False, slots=True)
class _Job(Generic[T]):
    items: Sequence[T]
    costs: Sequence[int]
    pending: list[int]  # indices not yet started; the next one is at the end
    results: list[float]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[float]]
    virtual: _Virtual
    arrival: int  # breaks ties between equal virtual standings: first come, first served
    queued_cost: int = 0
    running: int = 0
    done: int = 0
    error: BaseException | None = None
    settled: bool = False
    enqueued: float = 0.0  # time.perf_counter() when queued; 0 once its first pair started

    def priority(self) -> tuple[int, float, int]:
        """Lower goes first: finished in the virtual system (in that order), then least left."""
        if self.virtual.finished is not None:
            return (0, self.virtual.finished, self.arrival)
        return (1, self.virtual.left, self.arrival)


class Admission:
    """Room for `count` pairs in the queue, held from admission until the pairs are queued."""

    __slots__ = ("_scheduler", "count")

    def __init__(self, scheduler: FairScheduler[Any], count: int) -> None:
        self._scheduler = scheduler
        self.count = count

    def release(self) -> None:
        """Give the room back (idempotent); `FairScheduler.run` does it when it queues the pairs."""
        if self.count:
            self._scheduler._release(self.count)
            self.count = 0

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class FairScheduler(Generic[T]):
    """`score(item) -> float` on `workers` threads, shared between concurrent jobs (see module)."""

    def __init__(
        self,
        score: Callable[[T], float],
        *,
        workers: int,
        max_queued: int,
        name: str = "rerankd-local",
        provider: str = "",
        seconds_per_token: float = 2e-4,
        observe_wait: Callable[[float], None] | None = None,
    ) -> None:
        if workers < 1 or max_queued < 1:
            raise ValueError("workers and max_queued must be at least 1")
        self._score = score
        self.workers = workers
        self.max_queued = max_queued
        self.name = name
        self.provider = provider  # named in the errors
        self._cond = threading.Condition()
        self._jobs: list[_Job[T]] = []  # jobs with pairs not yet started
        self._virtual: list[_Virtual] = []  # jobs not yet finished in the virtual system
        self._arrivals = itertools.count()
        self._virtual_finishes = itertools.count()
        self._queued = 0  # pairs queued, not started
        self._queued_cost = 0  # their tokens
        self._running = 0  # pairs being scored
        self._reserved = 0  # pairs admitted, not yet queued (being tokenised)
        self._seconds_per_token = seconds_per_token  # one worker's, measured
        self._closed = False
        self._threads: list[threading.Thread] = []
        self.scored = 0  # pairs scored since start (for tests and metrics)
        self._observe_wait = observe_wait  # called with each job's wait before its first pair

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        with self._cond:
            if self._threads or self._closed:
                return
            for number in range(self.workers):
                thread = threading.Thread(target=self._work, name=f"{self.name}-{number}", daemon=True)
                self._threads.append(thread)
            threads = list(self._threads)
        for thread in threads:
            thread.start()

    def close(self) -> None:
        """Stop the workers once their current pair is done; queued jobs fail with UNAVAILABLE."""
        with self._cond:
            self._closed = True
            jobs, self._jobs = list(self._jobs), []
            for job in jobs:
                self._drop(job)
                shutting = errors.Unavailable("the local model is shutting down", provider=self.provider)
                job.error = job.error or shutting
                job.settled = True
            self._cond.notify_all()
        for job in jobs:
            self._settle_soon(job)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the workers to exit after `close` (each finishes the pair it is scoring)."""
        end = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if end is None else max(end - time.monotonic(), 0.0))

    # -- admission -----------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Pairs admitted and not yet started."""
        return self._queued + self._reserved

    def admit(self, count: int) -> Admission:
        """Room for `count` pairs, or QueueFull with the time the queue needs to drain."""
        with self._cond:
            if self._closed:
                raise errors.Unavailable("the local model is shutting down", provider=self.provider)
            waiting = self._queued + self._reserved
            if waiting and waiting + count > self.max_queued:
                raise QueueFull(
                    f"the local model's queue holds {waiting} pairs; {count} more would pass its bound"
                    f" of {self.max_queued}",
                    retry_after=self._drain_time(),
                    provider=self.provider,
                )
            self._reserved += count
        return Admission(self, count)

    def grow(self, admission: Admission, extra: int) -> None:
        """`extra` more pairs on an admission (a request's documents became more windows), or
        QueueFull as `admit` would have refused all of them: its own pairs never block it."""
        with self._cond:
            others = self._queued + self._reserved - admission.count
            if others and others + admission.count + extra > self.max_queued:
                raise QueueFull(
                    f"the local model's queue holds {others} pairs; {admission.count + extra} more"
                    f" would pass its bound of {self.max_queued}",
                    retry_after=self._drain_time(),
                    provider=self.provider,
                )
            self._reserved += extra
            admission.count += extra

    def _release(self, count: int) -> None:
        with self._cond:
            self._reserved -= count

    def _drain_time(self) -> float:
        mean_cost = self._queued_cost / self._queued if self._queued else 128
        tokens = self._queued_cost + self._reserved * mean_cost
        estimate = tokens * self._seconds_per_token / self.workers
        return min(max(estimate, _MIN_RETRY_AFTER_S), _MAX_RETRY_AFTER_S)

    # -- running -------------------------------------------------------------------------------
    async def run(self, admission: Admission, items: Sequence[T], costs: Sequence[int]) -> list[float]:
        """Score every item (costs: tokens of each); results in the items' order."""
        if len(items) != len(costs):
            raise ValueError("one cost per item")
        loop = asyncio.get_running_loop()
        if not items:
            admission.release()
            return []
        total = sum(costs)
        job: _Job[T] = _Job(
            items=items,
            costs=costs,
            pending=sorted(range(len(items)), key=lambda i: (costs[i], -i)),  # longest at the end
            results=[0.0] * len(items),
            loop=loop,
            future=loop.create_future(),
            virtual=_Virtual(left=float(max(total, 1))),
            arrival=next(self._arrivals),
            queued_cost=total,
            enqueued=time.perf_counter(),
        )
        with self._cond:
            if self._closed:
                admission.release()
                raise errors.Unavailable("the local model is shutting down", provider=self.provider)
            self._reserved -= admission.count
            admission.count = 0
            self._queued += len(items)
            self._queued_cost += total
            self._jobs.append(job)
            self._virtual.append(job.virtual)
            self._cond.notify(min(len(items), self.workers))
        try:
            return await job.future
        except asyncio.CancelledError:
            self._cancel(job)
            raise

    def _cancel(self, job: _Job[T]) -> None:
        with self._cond:
            self._drop(job)
            job.settled = True

    def _drop(self, job: _Job[T]) -> None:
        """Forget the job's pairs that have not started, and its virtual share (lock held)."""
        self._queued -= len(job.pending)
        self._queued_cost -= job.queued_cost
        job.queued_cost = 0
        job.pending.clear()
        with contextlib.suppress(ValueError):
            self._jobs.remove(job)
        with contextlib.suppress(ValueError):
            self._virtual.remove(job.virtual)

    def _advance(self, tokens: float) -> None:
        """Share `tokens` of real work equally among the jobs of the virtual system (lock held)."""
        while tokens > 1e-9 and self._virtual:
            count = len(self._virtual)
            least = min(v.left for v in self._virtual)
            step = min(tokens, least * count)
            for v in self._virtual:
                v.left -= step / count
            tokens -= step
            done = [v for v in self._virtual if v.left <= 1e-9]
            for v in done:
                v.left = 0.0
                v.finished = next(self._virtual_finishes)
            if done:
                self._virtual = [v for v in self._virtual if v.finished is None]

    def _next(self) -> tuple[_Job[T], int] | None:
        """The next pair: from the job that finishes first in the virtual system (lock held)."""
        if not self._jobs:
            return None
        job = min(self._jobs, key=_Job.priority)
        index = job.pending.pop()
        cost = job.costs[index]
        job.queued_cost -= cost
        job.running += 1
        self._running += 1
        self._queued -= 1
        self._queued_cost -= cost
        if not job.pending:
            self._jobs.remove(job)
        return job, index

    def _work(self) -> None:
        while True:
            with self._cond:
                picked = self._next()
                while picked is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    picked = self._next()
                job, index = picked
                started = time.perf_counter()
                waited, job.enqueued = (started - job.enqueued if job.enqueued else None), 0.0
            if waited is not None and self._observe_wait is not None:
                self._observe_wait(waited)
            error: BaseException | None = None
            score = 0.0
            try:
                score = self._score(job.items[index])
            except BaseException as exc:  # handed to the caller, never kills the worker
                error = exc
            elapsed = time.perf_counter() - started
            with self._cond:
                job.running -= 1
                self._running -= 1
                self.scored += 1
                cost = max(job.costs[index], 1)
                self._seconds_per_token += _EWMA * (elapsed / cost - self._seconds_per_token)
                self._advance(cost)
                if error is None:
                    job.results[index] = score
                    job.done += 1
                elif job.error is None:
                    job.error = error
                    self._drop(job)
                finished = job.running == 0 and not job.pending and not job.settled
                if finished:
                    job.settled = True
                    with contextlib.suppress(ValueError):  # answered: it leaves the virtual system
                        self._virtual.remove(job.virtual)
            if finished:
                self._settle_soon(job)

    @staticmethod
    def _settle_soon(job: _Job[T]) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
            job.loop.call_soon_threadsafe(_settle, job)


def _settle(job: _Job[Any]) -> None:
    if job.future.done():
        return
    if job.error is not None:
        job.future.set_exception(job.error)
    else:
        job.future.set_result(job.results)
