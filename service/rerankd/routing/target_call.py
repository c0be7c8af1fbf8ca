"""Serving a request on one target: its breaker permit, its chunks, and each call's retries.

`TargetCaller.serve(target, request)` takes a permit from the target's circuit breaker (an open
breaker refuses with CircuitOpen, recorded as an attempt), then scores every document there
(chunking.py splits a list longer than the target's `max_documents`). Each provider call is a
`TargetCall`: under the target's concurrency limit (a bounded wait) with a timeout inside the
caller's deadline, retried on retryable failures with jittered exponential back-off and
Retry-After (resilience/retry.py), every outcome reported to the breaker and the attempt log.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from rerankd import errors
from rerankd.providers.base import ProviderCall, ProviderResult
from rerankd.resilience.breaker import Permit
from rerankd.resilience.events import EventCounter
from rerankd.resilience.retry import MIN_ATTEMPT_S, breaker_verdict, retry_delay
from rerankd.routing import chunking
from rerankd.routing.attempt import send_attempt
from rerankd.routing.request import RouteRequest
from rerankd.routing.target_state import TargetState, TargetStates
from rerankd.routing.targets import Target


@dataclass(frozen=True, slots=True)
class CallerSettings:
    """What every target call shares: randomness, the clock, the bounded wait for a slot."""

    events: EventCounter
    rng: random.Random
    clock: Callable[[], float] = time.monotonic
    queue_timeout_s: float = 0.25


class TargetCaller:
    """Serves requests on single targets (what every strategy builds on)."""

    def __init__(self, states: TargetStates, settings: CallerSettings) -> None:
        self.states = states
        self.settings = settings

    async def serve(self, target: Target, request: RouteRequest) -> ProviderResult:
        """Every document of `request` scored on `target` (chunked when needed), or the error that
        ended it. The breaker's permit is held until then."""
        state = self.states.of(target)
        permit = state.breaker.try_acquire()
        if permit is None:
            refusal = state.breaker.refusal()
            request.log.add(target, refusal, 0.0, 1)
            raise refusal
        try:
            return await chunking.score_documents(TargetCall(target, state, permit, request, self.settings))
        finally:
            state.breaker.release(permit)


class TargetCall:
    """Provider calls to one target for one request, each retried while attempts and time are left."""

    __slots__ = ("permit", "request", "settings", "state", "target")

    def __init__(
        self,
        target: Target,
        state: TargetState,
        permit: Permit,
        request: RouteRequest,
        settings: CallerSettings,
    ) -> None:
        self.target = target
        self.state = state
        self.permit = permit
        self.request = request
        self.settings = settings

    async def send_with_retries(self, call: ProviderCall, prefix: str = "") -> ProviderResult:
        """One provider call (`prefix` names the chunk in attempt messages), with its retries."""
        target, breaker, log = self.target, self.state.breaker, self.request.log
        clock, deadline = self.settings.clock, self.request.deadline
        attempt = 0
        while True:
            attempt += 1
            if not breaker.allows(self.permit):
                refusal = breaker.refusal()
                log.add(target, refusal, 0.0, attempt, prefix)
                raise refusal
            remaining = deadline - clock()
            if remaining < MIN_ATTEMPT_S:
                raise errors.DeadlineExceeded(
                    f"{target.provider.name}: deadline reached", provider=target.provider.name
                )
            started = time.perf_counter()
            cut_by_deadline = False
            try:
                async with self.state.limit.slot(
                    min(self.settings.queue_timeout_s, remaining - MIN_ATTEMPT_S)
                ):
                    timeout, cut_by_deadline = self.attempt_timeout()
                    result = await send_attempt(target, call, timeout, attempt)
            except errors.RerankError as exc:
                elapsed = time.perf_counter() - started
                # A timeout the caller's deadline imposed says nothing about the target's health.
                impatient = cut_by_deadline and isinstance(exc, errors.DeadlineExceeded)
                breaker.record(self.permit, None if impatient else breaker_verdict(exc))
                delay = retry_delay(self.request.retry, attempt, exc, self.settings.rng, deadline - clock())
                note = "" if delay is None else f" (retry in {delay * 1000:.0f} ms)"
                log.add(target, exc, elapsed, attempt, prefix, note)
                if delay is None:
                    raise exc from None
                self.settings.events.emit("retry", target=target.label, code=exc.code.name)
                await asyncio.sleep(delay)
                continue
            except asyncio.CancelledError:
                if self.request.record_cancelled:
                    log.cancelled(target, time.perf_counter() - started, attempt, prefix)
                raise
            log.add(target, None, time.perf_counter() - started, attempt, prefix)
            breaker.record(self.permit, True)
            return result

    def attempt_timeout(self) -> tuple[float, bool]:
        """This attempt's timeout, and whether the caller's deadline (not a configured limit) set it."""
        remaining = max(self.request.deadline - self.settings.clock(), 0.0)
        configured = min(
            self.target.provider.timeout_s or math.inf, self.request.retry.attempt_timeout_s or math.inf
        )
        return min(remaining, configured), remaining <= configured
