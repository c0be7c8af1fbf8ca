"""Hedge: when an attempt has not answered after a delay, send the request to the next target too.

Dean and Barroso's hedged requests ("The Tail at Scale", 2013). The route's targets are used in
fallback order. The first is started; when it has not answered after the hedge delay, the next
target is started as well (the same target again when the route has only one), up to `max_extra`
hedges. The first good answer wins; every other attempt still running is cancelled, which closes
its HTTP request. A failure is a failover, not a hedge: when nothing else is running the next
target is started at once (no delay, no budget); a caller error (FATAL) is returned at once.

The delay is `delay_ms`, or with `delay_quantile` that quantile of the target's recent answer
times (its last 100 successful calls; `delay_ms` until 20 are seen). The hedge budget caps the
extra load: each request earns `budget_percent`/100 of a hedge (at most 10 saved up), a hedge
spends one, so at most about that share of the route's requests are hedged; a hedge the budget
refuses is not sent (the request waits, as fallback would).

Each target's attempts keep their own records; when a hedge was sent, the answer's attempt is
marked `hedge="won"` and the cancelled ones `hedge="cancelled"`. Events: `hedge` with result
"sent", "won" (a hedge's answer was used) or "refused" (over budget). A hedged route does not
stream chunk partials (two targets' partial scores would not be comparable).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, replace

from rerankd import errors
from rerankd.config import HedgeStrategy
from rerankd.domain import Attempt, Ranked
from rerankd.providers.base import ProviderResult
from rerankd.resilience.retry import MIN_ATTEMPT_S, Disposition, classify
from rerankd.routing.attempt import AttemptLog
from rerankd.routing.request import RouteRequest
from rerankd.routing.strategies.base import answer, final_error
from rerankd.routing.target_call import TargetCaller
from rerankd.routing.targets import Target

LATENCY_WINDOW = 100  # answer times kept per target for delay_quantile
MIN_LATENCIES = 20  # answer times seen before the quantile replaces delay_ms
BUDGET_CAP = 10.0  # hedges a quiet route can save up


class HedgeBudget:
    """Each request earns `percent`/100 of a hedge, each hedge spends one (bounded savings)."""

    def __init__(self, percent: float, cap: float = BUDGET_CAP) -> None:
        self.rate = percent / 100.0
        self.cap = cap
        self.tokens = 1.0

    def earn(self) -> None:
        self.tokens = min(self.cap, self.tokens + self.rate)

    def spend(self) -> bool:
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class LatencyWindow:
    """A target's most recent answer times, for the hedge delay's quantile."""

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self.seconds: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self.seconds.append(seconds)

    def quantile(self, q: float) -> float | None:
        if len(self.seconds) < MIN_LATENCIES:
            return None
        ordered = sorted(self.seconds)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


@dataclass(eq=False, slots=True)
class _Branch:
    """One target's part of a hedged request: its task, and its request with its own attempt log."""

    target: Target
    request: RouteRequest
    task: asyncio.Task[ProviderResult]
    started: float
    hedge: bool


class Hedge:
    """The hedged strategy of one route (its budget and latency windows live here)."""

    name = "hedge"

    def __init__(self, config: HedgeStrategy) -> None:
        self.config = config
        self.budget = HedgeBudget(config.budget_percent)
        self.latencies: dict[str, LatencyWindow] = {}

    def delay(self, target: Target) -> float:
        """Seconds to wait for `target` before hedging."""
        if self.config.delay_quantile is not None:
            window = self.latencies.get(target.label)
            seen = window.quantile(self.config.delay_quantile) if window is not None else None
            if seen is not None:
                return seen
        return self.config.delay_ms / 1000.0

    async def run(self, request: RouteRequest, caller: TargetCaller) -> Ranked:
        self.budget.earn()
        race = _Race(self, request, caller)
        try:
            winner = await race.run()
        finally:
            await race.close()
        events, clock = caller.settings.events, caller.settings.clock
        if winner is None:
            raise final_error(race.failures, request, clock())
        self.latencies.setdefault(winner.target.label, LatencyWindow()).add(clock() - winner.started)
        if winner.hedge:
            events.emit("hedge", route=request.route, result="won")
        return answer(request, winner.target, winner.task.result())


class _Race:
    """One hedged request: the branches started so far and what they ended with."""

    def __init__(self, strategy: Hedge, request: RouteRequest, caller: TargetCaller) -> None:
        self.strategy = strategy
        self.request = request
        self.caller = caller
        self.clock = caller.settings.clock
        self.events = caller.settings.events
        self.queue = list(request.targets)  # not started yet, in fallback order
        self.branches: list[_Branch] = []
        self.failures: list[errors.RerankError] = []
        self.turns = strategy.config.max_extra  # hedge turns left (a refused one ends them)
        self.sent = 0
        self.winner: _Branch | None = None

    async def run(self) -> _Branch | None:
        """The branch whose answer wins, or None when every target failed or time ran out."""
        while self.winner is None:
            running = [b.task for b in self.branches if not b.task.done()]
            if not running:
                if not self.start_next():
                    return None
                continue
            done, _ = await asyncio.wait(
                running, timeout=self.hedge_wait(), return_when=asyncio.FIRST_COMPLETED
            )
            if done:
                self.settle(done)
            else:
                self.hedge()
        return self.winner

    def time_left(self) -> bool:
        return self.request.deadline - self.clock() >= MIN_ATTEMPT_S

    def start(self, target: Target, hedge: bool) -> None:
        own = replace(self.request, log=AttemptLog(), record_cancelled=True, on_partial=None)
        task = asyncio.ensure_future(self.caller.serve(target, own))
        self.branches.append(_Branch(target, own, task, self.clock(), hedge))

    def start_next(self) -> bool:
        """Nothing is running: the first target, or after a failure the next one (a fallback)."""
        if not self.queue or not self.time_left():
            return False
        target = self.queue.pop(0)
        if self.branches:
            previous = self.branches[-1].target.label
            self.events.emit(
                "fallback", route=self.request.route, from_target=previous, to_target=target.label
            )
        self.start(target, hedge=False)
        return True

    def hedge_target(self) -> Target | None:
        if self.queue:
            return self.queue[0]
        if len(self.request.targets) == 1:
            return self.request.targets[0]  # one target: hedge to it again
        return None

    def hedge_wait(self) -> float | None:
        """Seconds until the next hedge is due; None when no hedge is left to send."""
        if self.turns <= 0 or self.hedge_target() is None:
            return None
        latest = self.branches[-1]
        return max(latest.started + self.strategy.delay(latest.target) - self.clock(), 0.0)

    def hedge(self) -> None:
        """A hedge is due: send it if the budget and the deadline allow."""
        self.turns -= 1
        if not self.time_left():
            return
        if not self.strategy.budget.spend():
            self.events.emit("hedge", route=self.request.route, result="refused")
            self.turns = 0
            return
        target = self.queue.pop(0) if self.queue else self.request.targets[0]  # as hedge_target()
        self.events.emit("hedge", route=self.request.route, result="sent")
        self.sent += 1
        self.start(target, hedge=True)

    def settle(self, done: set[asyncio.Task[ProviderResult]]) -> None:
        """Take the finished branches: the first answer wins; a caller error is raised at once."""
        for branch in self.branches:
            if branch.task not in done:
                continue
            error = branch.task.exception()
            if error is None:
                self.winner = self.winner or branch
            elif isinstance(error, errors.RerankError) and classify(error) is not Disposition.FATAL:
                self.failures.append(error)
            else:
                raise error

    async def close(self) -> None:
        """Cancel what still runs and put every branch's attempts into the request's log."""
        await _cancel([b.task for b in self.branches if not b.task.done()])
        records = _records(self.branches, self.winner, hedged=self.sent > 0)
        self.request.log.attempts.extend(records)


async def _cancel(tasks: list[asyncio.Task[ProviderResult]]) -> None:
    """Cancel the losers and wait until they are gone (their HTTP requests closed)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task


def _records(branches: list[_Branch], winner: _Branch | None, *, hedged: bool) -> list[Attempt]:
    """Every branch's attempts in the order the branches started, marked won/cancelled when hedged."""
    records: list[Attempt] = []
    for branch in branches:
        attempts = branch.request.log.attempts
        for number, attempt in enumerate(attempts):
            if hedged and attempt.outcome == "CANCELLED":
                attempt = replace(attempt, hedge="cancelled")
            elif hedged and branch is winner and number == len(attempts) - 1:
                attempt = replace(attempt, hedge="won")
            records.append(attempt)
    return records
