"""How requests for one name are served: strategy, retries, response cache, chunk concurrency."""

from __future__ import annotations

from dataclasses import dataclass, field

from rerankd.cache import ResponseCache
from rerankd.config import CascadeStrategy, FallbackStrategy, HedgeStrategy, RetryConfig, RouteConfig
from rerankd.routing.strategies import Cascade, Fallback, Hedge, Strategy


@dataclass(slots=True)
class RoutePolicy:
    """One route's serving policy (direct model names get the defaults)."""

    retry: RetryConfig = field(default_factory=RetryConfig)
    cache: ResponseCache | None = None
    chunk_concurrency: int = 8
    strategy: Strategy = field(default_factory=Fallback)

    @classmethod
    def from_config(cls, route: RouteConfig) -> RoutePolicy:
        cache = ResponseCache(route.cache) if route.cache.enabled else None
        return cls(route.retry, cache, route.chunk_concurrency, build_strategy(route))


def build_strategy(route: RouteConfig) -> Strategy:
    """The strategy object of a route's `strategy` config (it keeps that route's state)."""
    config = route.strategy
    if isinstance(config, HedgeStrategy):
        return Hedge(config)
    if isinstance(config, CascadeStrategy):
        return Cascade(config)
    assert isinstance(config, FallbackStrategy), config
    return Fallback()
