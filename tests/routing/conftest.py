"""Helpers for the routing unit tests: a Router over ScriptedProviders, and a query."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from rerankd.config import BreakerConfig, ProviderConfig, RetryConfig
from rerankd.domain import Document, RerankQuery
from rerankd.routing import Router, Target
from rerankd.routing.policy import RoutePolicy

from tests.routing.scripted import ScriptedProvider

SCORES = ["0.1", "0.9", "0.5", "0.3"]  # documents whose text is their score
FAST_RETRY = RetryConfig(max_attempts=2, initial_backoff_s=0.001, max_backoff_s=0.002)


def query(texts: Sequence[str] = SCORES, top_n: int | None = None, model: str = "r") -> RerankQuery:
    return RerankQuery(model=model, query="q", documents=[Document(text=t) for t in texts], top_n=top_n)


def router_over(
    *providers: ScriptedProvider,
    policy: RoutePolicy | None = None,
    breaker: BreakerConfig | None = None,
    **options: Any,
) -> Router:
    """Route "r": the providers' model "m" in the given order (priority 0, 1, ...)."""
    targets = [Target(p, "m", priority=n) for n, p in enumerate(providers)]
    configs = {p.name: ProviderConfig(kind="scripted", breaker=breaker or BreakerConfig()) for p in providers}
    return Router(
        {p.name: p for p in providers},
        {"r": targets},
        policies={"r": policy or RoutePolicy(retry=FAST_RETRY)},
        provider_configs=configs,
        rng=random.Random(7),
        **options,
    )


def deadline(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def outcomes(ranked: Any) -> list[tuple[str, str, int]]:
    return [(a.provider, a.outcome, a.attempt) for a in ranked.attempts]
