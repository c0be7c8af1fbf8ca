"""The seam every routing strategy fills, and what strategies share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rerankd import errors
from rerankd.domain import Ranked
from rerankd.providers.base import ProviderResult
from rerankd.resilience.retry import MIN_ATTEMPT_S
from rerankd.routing.ranking import rank
from rerankd.routing.request import RouteRequest
from rerankd.routing.target_call import TargetCaller
from rerankd.routing.targets import Target


class Strategy(Protocol):
    """Serves one request on a route's targets through `caller`."""

    name: str

    async def run(self, request: RouteRequest, caller: TargetCaller) -> Ranked: ...


def answer(request: RouteRequest, target: Target, result: ProviderResult) -> Ranked:
    """The caller's answer from one target's result: ranked, cut to top_n, with the attempts."""
    return Ranked(
        rank(result.scores, request.query.top_n),
        result.usage,
        target.provider.name,
        result.model,
        request.log.attempts,
    )


def final_error(
    failures: Sequence[errors.RerankError], request: RouteRequest, now: float
) -> errors.RerankError:
    """What to report when no target answered: the deadline, else the most useful failure."""
    if not failures or request.deadline - now < MIN_ATTEMPT_S:
        provider = failures[-1].provider if failures else ""
        return errors.DeadlineExceeded(
            f"deadline exceeded after {len(request.log)} attempt(s)", provider=provider
        )
    retryable = [f for f in failures if f.retryable]
    return retryable[-1] if retryable else failures[-1]
