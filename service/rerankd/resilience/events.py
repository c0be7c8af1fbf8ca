"""Counters of what the resilience layer did, for tests and for a metrics module to read.

The router emits one event per retry, fallback, breaker transition, overload rejection, cache
lookup and hedge. An `EventCounter` keeps a count per (name, labels) and calls every subscribed hook, so a
Prometheus module can mirror the counts without the router knowing about Prometheus:

    router.events.subscribe(lambda name, labels: COUNTERS[name].labels(**labels).inc())

Event names and their labels:

    retry     target, code                  a retry of the same target was scheduled
    fallback  route, from_target, to_target the next target was tried after a failure
    breaker   target, from_state, to_state  a circuit breaker changed state
    overload  scope ("server" | "target"), target    a request was refused past the bounded wait
    cache     route, result ("hit" | "miss")         a response-cache lookup
    hedge     route, result ("sent" | "won" | "refused")  a hedge sent, a hedge's answer used, or
              one the route's hedge budget refused (routing/strategies/hedge.py)

Labels can carry a caller's ad-hoc "provider/model" target, so the counts are bounded: past
_MAX_KEYS distinct (name, labels), further new ones are counted under (name, overflow="true").
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping

_LOG = logging.getLogger("rerankd.resilience")

Hook = Callable[[str, Mapping[str, str]], None]
EVENT_NAMES = ("retry", "fallback", "breaker", "overload", "cache", "hedge")
_MAX_KEYS = 10_000


class EventCounter:
    """Counts of named, labelled events, plus hooks called on every event."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._hooks: list[Hook] = []
        self._lock = threading.Lock()

    def emit(self, name: str, **labels: str) -> None:
        """Count one `name` event; a failing hook is logged and never breaks the request."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            if key not in self._counts and len(self._counts) >= _MAX_KEYS:
                key = (name, (("overflow", "true"),))
            self._counts[key] += 1
            hooks = list(self._hooks)
        for hook in hooks:
            try:
                hook(name, labels)
            except Exception:
                _LOG.exception("resilience event hook failed for %s", name)

    def subscribe(self, hook: Hook) -> Callable[[], None]:
        """Call `hook(name, labels)` on every event from now on; returns an unsubscribe function."""
        with self._lock:
            self._hooks.append(hook)

        def unsubscribe() -> None:
            with self._lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)

        return unsubscribe

    def count(self, name: str, **labels: str) -> int:
        """Events named `name` whose labels include every given label (all of them if none given)."""
        wanted = set(labels.items())
        with self._lock:
            return sum(n for (event, key), n in self._counts.items() if event == name and wanted <= set(key))

    def snapshot(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
        """Every count so far, keyed by (name, sorted label pairs)."""
        with self._lock:
            return dict(self._counts)
