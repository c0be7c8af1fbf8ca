"""Fallback: try the route's targets in priority order, the next one after a failure.

A caller error (FATAL: INVALID_ARGUMENT and the like) is returned at once; a retryable or
failover error moves on to the next target (a `fallback` event); no target is started when the
deadline leaves no time for an attempt.
"""

from __future__ import annotations

from rerankd import errors
from rerankd.domain import Ranked
from rerankd.resilience.retry import MIN_ATTEMPT_S, Disposition, classify
from rerankd.routing.request import RouteRequest
from rerankd.routing.strategies.base import answer, final_error
from rerankd.routing.target_call import TargetCaller
from rerankd.routing.targets import Target


class Fallback:
    """The default strategy: targets one after another."""

    name = "fallback"

    async def run(self, request: RouteRequest, caller: TargetCaller) -> Ranked:
        clock, events = caller.settings.clock, caller.settings.events
        failures: list[errors.RerankError] = []
        previous: Target | None = None
        for target in request.targets:
            if request.deadline - clock() < MIN_ATTEMPT_S:
                break
            if previous is not None:
                events.emit(
                    "fallback", route=request.route, from_target=previous.label, to_target=target.label
                )
            previous = target
            try:
                result = await caller.serve(target, request)
            except errors.RerankError as exc:
                if classify(exc) is Disposition.FATAL:
                    raise
                failures.append(exc)
                continue
            return answer(request, target, result)
        raise final_error(failures, request, clock())
