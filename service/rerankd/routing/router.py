"""The router: a small coordinator of names, policies, limits and strategies.

For one request it:

1. answers from the route's response cache when it has one and the request was seen (cache.py);
2. takes a server-wide slot, waiting a bounded time (resilience/limits.py);
3. resolves the name to targets (targets.py) and hands the request to the route's strategy
   (strategies/: fallback by default), which serves it on targets through a `TargetCaller`
   (target_call.py: breaker, concurrency limit, timeout inside the deadline, retries, chunks).

Every call is recorded in `Ranked.attempts`; retries, fallbacks, breaker transitions, overloads
and cache lookups are counted in `Router.events`. Cancellation (the caller hung up, the deadline
passed) propagates into the provider calls, which close their connections; no attempt starts
after it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence

from rerankd import metrics
from rerankd.config import (
    DEFAULT_ALIAS,
    LOCAL_PROVIDER,
    CascadeStrategy,
    ProviderConfig,
    RouteConfig,
    Settings,
)
from rerankd.domain import Ranked, RerankQuery
from rerankd.providers.base import Provider
from rerankd.resilience.breaker import State
from rerankd.resilience.events import EventCounter
from rerankd.resilience.limits import ConcurrencyLimit
from rerankd.resilience.retry import MIN_ATTEMPT_S
from rerankd.routing.policy import RoutePolicy
from rerankd.routing.request import PartialSink, RouteRequest
from rerankd.routing.target_call import CallerSettings, TargetCaller
from rerankd.routing.target_state import TargetState, TargetStates
from rerankd.routing.targets import ModelEntry, ModelNames, Target


class Router:
    """Resolves names and serves requests on their targets with the route's strategy."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        routes: Mapping[str, Sequence[Target]],
        *,
        policies: Mapping[str, RoutePolicy] | None = None,
        patterns: Sequence[tuple[str, str]] = (),
        provider_configs: Mapping[str, ProviderConfig] | None = None,
        settings: Settings | None = None,
        rng: random.Random | None = None,
        events: EventCounter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`settings` gives the server-wide limits (max_concurrent_requests, queue_timeout_s)."""
        settings = settings or Settings()
        rng = rng or random.Random()
        self.names = ModelNames(providers, routes, patterns, rng)
        self.policies = dict(policies or {})
        self.events = events or EventCounter()
        self.queue_timeout_s = queue_timeout_s = settings.queue_timeout_s
        self.server_limit = ConcurrencyLimit(
            "server",
            settings.max_concurrent_requests,
            scope="server",
            on_reject=lambda: self.events.emit("overload", scope="server", target=""),
        )
        self.states = TargetStates(provider_configs or {}, self.events, clock)
        self.caller = TargetCaller(self.states, CallerSettings(self.events, rng, clock, queue_timeout_s))
        self._default_policy = RoutePolicy()
        self._clock = clock
        # The configured names and targets are the only metric label values (metrics.py).
        metrics.know_models([*self.names.routes, *self.names.direct])
        metrics.know_patterns(self.names.patterns)  # a name a route's `match` answers counts as that route
        metrics.know_targets(self.names.labels())

    @classmethod
    def from_config(
        cls,
        providers: Mapping[str, Provider],
        routes: Mapping[str, RouteConfig],
        *,
        provider_configs: Mapping[str, ProviderConfig] | None = None,
        settings: Settings | None = None,
    ) -> Router:
        """Build from configured routes; `default` goes to the local model unless configured."""
        built: dict[str, list[Target]] = {}
        for alias, route in routes.items():
            targets = []
            stages = isinstance(route.strategy, CascadeStrategy)  # stages in the order listed
            for index, spec in enumerate(route.targets):
                provider = providers.get(spec.provider)
                if provider is None:
                    raise ValueError(f"routes.{alias}.targets[{index}]: unknown provider {spec.provider!r}")
                model = spec.model or next(iter(provider.models()), "")
                if not model:
                    raise ValueError(
                        f"routes.{alias}.targets[{index}]: provider {spec.provider!r} needs a model"
                    )
                priority = index if stages else spec.priority
                targets.append(Target(provider, model, spec.weight, priority))
            built[alias] = targets
        local = providers.get(LOCAL_PROVIDER)
        if DEFAULT_ALIAS not in built and local is not None:
            built[DEFAULT_ALIAS] = [Target(local, next(iter(local.models())))]
        policies = {alias: RoutePolicy.from_config(route) for alias, route in routes.items()}
        patterns = [(pattern, alias) for alias, route in routes.items() for pattern in route.match]
        return cls(
            providers,
            built,
            policies=policies,
            patterns=patterns,
            provider_configs=provider_configs,
            settings=settings,
        )

    # -- names ---------------------------------------------------------------------------------
    @property
    def providers(self) -> dict[str, Provider]:
        return self.names.providers

    @property
    def routes(self) -> dict[str, list[Target]]:
        return self.names.routes

    def entries(self) -> list[ModelEntry]:
        """Names for ListModels; each alias's targets in fallback (priority) order."""
        return self.names.entries()

    def resolve(self, name: str) -> list[Target]:
        """Targets for `name` in the order they will be tried; NotFound lists the known names."""
        return self.names.resolve(name)

    def matched_route(self, name: str) -> str:
        """The alias of the first route whose `match` patterns `name` fits ("" when none)."""
        return self.names.matched_route(name)

    def policy(self, name: str) -> RoutePolicy:
        """The policy requests for `name` are served with (defaults for direct model names)."""
        name = name or DEFAULT_ALIAS
        policy = self.policies.get(name)
        if policy is None and self.names.patterns:
            policy = self.policies.get(self.matched_route(name))
        return policy or self._default_policy

    def target_state(self, target: Target) -> TargetState:
        """The breaker and concurrency limit of `target` (created on first use)."""
        return self.states.of(target)

    def breaker_states(self) -> dict[str, State]:
        """The state of every target's breaker seen so far (for health and metrics)."""
        return self.states.breaker_states()

    # -- serving -------------------------------------------------------------------------------
    async def rerank(
        self,
        query: RerankQuery,
        *,
        deadline: float,
        headers: Mapping[str, str] | None = None,
        on_partial: PartialSink | None = None,
    ) -> Ranked:
        """Serve `query` before `deadline` (a time.monotonic() value). `on_partial`, when given,
        receives each finished chunk's scores (indices into the whole request) as they come."""
        name = query.model or DEFAULT_ALIAS
        targets = self.resolve(name)
        policy = self.policy(name)
        key = None
        if policy.cache is not None:
            key = policy.cache.key(name, query)
            hit = policy.cache.get(key)
            self.events.emit("cache", route=name, result="hit" if hit else "miss")
            if hit is not None:
                return hit
        request = RouteRequest(
            name,
            targets,
            query,
            deadline,
            policy.retry,
            policy.chunk_concurrency,
            headers or {},
            on_partial,
        )
        async with self.server_limit.slot(self._wait(deadline)):
            ranked = await policy.strategy.run(request, self.caller)
        if policy.cache is not None and key is not None:
            policy.cache.put(key, ranked)
            ranked.cache = "miss"
        return ranked

    def _wait(self, deadline: float) -> float:
        return max(min(self.queue_timeout_s, deadline - self._clock() - MIN_ATTEMPT_S), 0.0)
