"""What the router keeps per target: its circuit breaker and its concurrency limit.

States are created on first use from the target's provider config and kept in LRU order; past
`MAX_TARGET_STATES` (callers' ad-hoc "provider/model" names can make many), idle targets with a
closed breaker are forgotten. Breaker transitions are logged and counted as `breaker` events.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rerankd.config import BreakerConfig, ProviderConfig
from rerankd.resilience.breaker import CircuitBreaker, State
from rerankd.resilience.events import EventCounter
from rerankd.resilience.limits import ConcurrencyLimit
from rerankd.routing.targets import Target

_LOG = logging.getLogger("rerankd.router")
MAX_TARGET_STATES = 1024  # breakers + limits kept for ad-hoc "provider/model" names
DEFAULT_TARGET_CONCURRENCY = 64


@dataclass(slots=True)
class TargetState:
    """One target's circuit breaker and concurrency limit."""

    breaker: CircuitBreaker
    limit: ConcurrencyLimit


class TargetStates:
    """Every target's state, created on first use, bounded in number."""

    def __init__(
        self,
        provider_configs: Mapping[str, ProviderConfig],
        events: EventCounter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider_configs = dict(provider_configs)
        self.events = events
        self._clock = clock
        self._states: OrderedDict[str, TargetState] = OrderedDict()

    def of(self, target: Target) -> TargetState:
        """The breaker and concurrency limit of `target` (created on first use)."""
        label = target.label
        state = self._states.get(label)
        if state is not None:
            self._states.move_to_end(label)
            return state
        config = self.provider_configs.get(target.provider.name)
        breaker_config = config.breaker if config is not None else BreakerConfig()
        state = TargetState(
            CircuitBreaker(label, breaker_config, clock=self._clock, on_transition=self._transition),
            ConcurrencyLimit(
                label,
                config.max_concurrency if config is not None else DEFAULT_TARGET_CONCURRENCY,
                scope="target",
                on_reject=lambda: self.events.emit("overload", scope="target", target=label),
            ),
        )
        self._states[label] = state
        if len(self._states) > MAX_TARGET_STATES:
            self._forget_idle()
        return state

    def breaker_states(self) -> dict[str, State]:
        """The state of every target's breaker seen so far (for health and metrics)."""
        return {label: state.breaker.state for label, state in self._states.items()}

    def _transition(self, label: str, old: State, new: State) -> None:
        log = _LOG.warning if new is State.OPEN else _LOG.info
        log("circuit %s: %s -> %s", label, old.value, new.value)
        self.events.emit("breaker", target=label, from_state=old.value, to_state=new.value)

    def _forget_idle(self) -> None:
        for label, state in list(self._states.items()):
            if len(self._states) <= MAX_TARGET_STATES // 2:
                break
            idle = state.limit.in_flight == 0 and state.limit.waiting == 0
            if idle and state.breaker.state is State.CLOSED:
                del self._states[label]
