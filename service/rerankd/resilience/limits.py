"""Backpressure: a concurrency limit with a bounded wait, never an unbounded queue.

A request (server-wide) or a provider call (per target) takes a slot; when every slot is taken it
waits at most the given time for one, then fails with `Overloaded`, a RESOURCE_EXHAUSTED whose
RetryInfo tells the caller when to try again. Slots are released when the holder finishes, fails
or is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rerankd.errors import Overloaded

_MIN_RETRY_AFTER_S = 0.1


class ConcurrencyLimit:
    """At most `limit` holders at once; others wait a bounded time, then get Overloaded."""

    def __init__(
        self, name: str, limit: int, *, scope: str, on_reject: Callable[[], None] | None = None
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.name = name
        self.limit = limit
        self.scope = scope  # "server" or "target"
        self.rejected = 0
        self._on_reject = on_reject
        self.in_flight = 0
        self.waiting = 0
        self._semaphore = asyncio.Semaphore(limit)

    def slot(self, wait: float) -> _Slot:
        """`async with limit.slot(wait):` holds a slot for the body; waits at most `wait` seconds
        for one, else raises Overloaded."""
        return _Slot(self, wait)

    async def _acquire(self, wait: float) -> None:
        if not self._semaphore.locked():  # a free slot: taken at once, no timer needed
            await self._semaphore.acquire()
        else:
            wait = max(wait, 0.0)
            if wait == 0.0:
                raise self._overloaded(wait)
            self.waiting += 1
            try:
                async with asyncio.timeout(wait):
                    await self._semaphore.acquire()
            except TimeoutError:
                raise self._overloaded(wait) from None
            finally:
                self.waiting -= 1
        self.in_flight += 1

    def _release(self) -> None:
        self.in_flight -= 1
        self._semaphore.release()

    def _overloaded(self, waited: float) -> Overloaded:
        self.rejected += 1
        if self._on_reject is not None:
            self._on_reject()
        what = "server" if self.scope == "server" else f"target {self.name}"
        return Overloaded(
            f"{what} is at its limit of {self.limit} concurrent calls (waited {waited * 1000:.0f} ms)",
            retry_after=max(waited, _MIN_RETRY_AFTER_S),
            provider="" if self.scope == "server" else self.name.partition("/")[0],
        )


class _Slot:
    """One holding of a ConcurrencyLimit (a plain class: cheaper per call than a generator)."""

    __slots__ = ("_limit", "_wait")

    def __init__(self, limit: ConcurrencyLimit, wait: float) -> None:
        self._limit = limit
        self._wait = wait

    async def __aenter__(self) -> None:
        await self._limit._acquire(self._wait)

    async def __aexit__(self, *exc_info: object) -> None:
        self._limit._release()
