"""What one routed request carries through the strategies: the query, its deadline and its log.

`RouteRequest` replaces the parameter chains of the old router: a strategy hands it to
`TargetCaller.serve` for each target it tries, and everything below reads from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from rerankd.config import RetryConfig
from rerankd.domain import RerankQuery, Scored
from rerankd.routing.attempt import AttemptLog
from rerankd.routing.targets import Target

# Where a streaming caller that asked for `progressive` results wants each finished chunk's scores
# (indices into the whole request): a parameter of Router.rerank, passed down to the chunks.
PartialSink = Callable[[list[Scored]], None]


@dataclass(slots=True)
class RouteRequest:
    """One request on its way through a route's targets."""

    route: str  # the name asked for ("default" when empty)
    targets: Sequence[Target]  # in the order a fallback would try them
    query: RerankQuery
    deadline: float  # a time.monotonic() value
    retry: RetryConfig
    chunk_concurrency: int
    headers: Mapping[str, str] = field(default_factory=dict)
    on_partial: PartialSink | None = None
    log: AttemptLog = field(default_factory=AttemptLog)
    record_cancelled: bool = False  # log calls cancelled mid-flight (a hedge's loser) as CANCELLED
