"""A circuit breaker per target: skip a failing target instead of waiting on it.

    CLOSED     calls go through; the breaker opens after `consecutive_failures` failures in a row,
               or when at least `failure_rate` of the last `window` calls failed (once `min_calls`
               calls are in the window)
    OPEN       calls are refused at once (CircuitOpen, UNAVAILABLE with RetryInfo) for `open_s`
    HALF_OPEN  up to `half_open_probes` requests at a time are let through as probes: a probe's
               success closes the breaker, its failure opens it again for another `open_s`

A request takes a `Permit` before it uses the target and reports the outcome of every call it
makes under it (`record`): True for an answer, False for a failure that says the target is
unhealthy, None for outcomes that say nothing about it (the caller's mistake, cancellation).
Every state change starts a new generation; outcomes of permits from an older generation are
ignored, so a slow call started before the breaker opened cannot close it. The breaker is plain
synchronous code: it runs on the event loop thread and never awaits.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from rerankd.config import BreakerConfig
from rerankd.errors import CircuitOpen


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to use the target for one request; `probe` when granted half-open."""

    generation: int
    probe: bool = False


Transition = Callable[[str, State, State], None]


class CircuitBreaker:
    """The breaker of one target, named by the target's label ("provider/model")."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Transition | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        self._on_transition = on_transition
        self._state = State.CLOSED
        self._generation = 0
        self._consecutive = 0
        self._window: deque[bool] = deque(maxlen=config.window)
        self._reopen_at = 0.0
        self._probes = 0

    @property
    def state(self) -> State:
        """The current state (an open breaker whose time is up turns half-open here)."""
        if self._state is State.OPEN and self._clock() >= self._reopen_at:
            self._move(State.HALF_OPEN)
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self.state is not State.OPEN:
            return 0.0
        return max(self._reopen_at - self._clock(), 0.0)

    def try_acquire(self) -> Permit | None:
        """A permit to use the target, or None when the breaker refuses (open, or probes busy)."""
        if not self.config.enabled:
            return Permit(self._generation)
        state = self.state
        if state is State.CLOSED:
            return Permit(self._generation)
        if state is State.HALF_OPEN and self._probes < self.config.half_open_probes:
            self._probes += 1
            return Permit(self._generation, probe=True)
        return None

    def allows(self, permit: Permit) -> bool:
        """Whether a request holding `permit` may still call the target (no open since)."""
        if not self.config.enabled:
            return True
        state = self.state
        return state is State.CLOSED or (permit.generation == self._generation and state is not State.OPEN)

    def refusal(self) -> CircuitOpen:
        """The error that reports this breaker refusing a call."""
        provider = self.name.partition("/")[0]
        return CircuitOpen(
            f"{self.name}: circuit open, target skipped",
            retry_after=self.retry_after() or None,
            provider=provider,
        )

    def record(self, permit: Permit, ok: bool | None) -> None:
        """Report one call's outcome under `permit` (see the module docstring)."""
        if ok is None or not self.config.enabled or permit.generation != self._generation:
            return
        state = self.state
        if state is State.HALF_OPEN and permit.probe:
            self._move(State.CLOSED if ok else State.OPEN)
            return
        if state is not State.CLOSED:
            return
        self._window.append(ok)
        self._consecutive = 0 if ok else self._consecutive + 1
        if not ok and self._should_open():
            self._move(State.OPEN)

    def release(self, permit: Permit) -> None:
        """The request holding `permit` is done with the target (frees a half-open probe slot)."""
        if permit.probe and permit.generation == self._generation and self._probes > 0:
            self._probes -= 1

    def _should_open(self) -> bool:
        if self._consecutive >= self.config.consecutive_failures:
            return True
        calls = len(self._window)
        if calls < self.config.min_calls:
            return False
        failures = calls - sum(self._window)
        return failures / calls >= self.config.failure_rate

    def _move(self, new: State) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._probes = 0
        if new is State.OPEN:
            self._reopen_at = self._clock() + self.config.open_s
        if new is State.CLOSED:
            self._consecutive = 0
            self._window.clear()
        if self._on_transition is not None:
            self._on_transition(self.name, old, new)
