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
from dataclasses import dataclass, field, replace

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
    """One target's part of a hedged request: its task and its own attempt log."""

    target: Target
    request: RouteRequest
    task: asyncio.Task[ProviderResult]
    started: float
    hedge: bool
    log: AttemptLog = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.request.log


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
        clock, events = caller.settings.clock, caller.settings.events
        self.budget.earn()
        queue = list(request.targets)
        branches: list[_Branch] = []
        failures: list[errors.RerankError] = []
        hedges = 0

        def start(target: Target, hedge: bool) -> None:
            own = replace(request, log=AttemptLog(), record_cancelled=True, on_partial=None)
            task = asyncio.ensure_future(caller.serve(target, own))
            branches.append(_Branch(target, own, task, clock(), hedge))

        def next_target(for_hedge: bool) -> Target | None:
            if queue:
                return queue.pop(0)
            if for_hedge and len(request.targets) == 1:
                return request.targets[0]  # one target: hedge to it again
            return None

        winner: _Branch | None = None
        try:
            first = next_target(False)
            if first is not None and request.deadline - clock() >= MIN_ATTEMPT_S:
                start(first, hedge=False)
            while winner is None:
                running = [b for b in branches if not b.task.done()]
                if not running:
                    target = next_target(False) if request.deadline - clock() >= MIN_ATTEMPT_S else None
                    if target is None:
                        break
                    if branches:
                        events.emit(
                            "fallback",
                            route=request.route,
                            from_target=branches[-1].target.label,
                            to_target=target.label,
                        )
                    start(target, hedge=False)
                    continue
                wait: float | None = None
                if hedges < self.config.max_extra and (queue or len(request.targets) == 1):
                    latest = branches[-1]
                    wait = max(latest.started + self.delay(latest.target) - clock(), 0.0)
                done, _ = await asyncio.wait(
                    [b.task for b in running], timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    hedges += 1  # this hedge's turn is used, sent or not
                    if request.deadline - clock() < MIN_ATTEMPT_S:
                        continue
                    if not self.budget.spend():
                        events.emit("hedge", route=request.route, result="refused")
                        hedges = self.config.max_extra
                        continue
                    target = next_target(True)
                    assert target is not None
                    events.emit("hedge", route=request.route, result="sent")
                    start(target, hedge=True)
                    continue
                for branch in branches:
                    if branch.task not in done:
                        continue
                    error = branch.task.exception()
                    if error is None:
                        winner = winner or branch
                        continue
                    if not isinstance(error, errors.RerankError) or classify(error) is Disposition.FATAL:
                        raise error
                    failures.append(error)
        finally:
            await _cancel([b.task for b in branches if not b.task.done()])
            request.log.attempts.extend(_records(branches, winner, hedged=hedges > 0 and len(branches) > 1))
        if winner is None:
            raise final_error(failures, request, clock())
        result = winner.task.result()
        self.latencies.setdefault(winner.target.label, LatencyWindow()).add(clock() - winner.started)
        if winner.hedge:
            events.emit("hedge", route=request.route, result="won")
        return answer(request, winner.target, result)


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
        for number, attempt in enumerate(branch.log.attempts):
            if hedged and attempt.outcome == "CANCELLED":
                attempt = replace(attempt, hedge="cancelled")
            elif hedged and branch is winner and number == len(branch.log.attempts) - 1:
                attempt = replace(attempt, hedge="won")
            records.append(attempt)
    return records
