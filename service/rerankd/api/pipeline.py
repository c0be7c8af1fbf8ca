"""The steps every front door shares, so gRPC and HTTP serve a request the same way.

    identify()        request id and the server's span, from the caller's ids and headers/metadata
    Pipeline.rerank() validate, set the deadline, build the outbound trace headers, call the router
    Pipeline.targets() what a model name resolves to (for dialect checks made before any work)
    log_access()      one access-log record per call: ids, model, provider, counts, latency (never text)

A front door only converts its wire format to a RerankQuery and the Ranked answer back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import NamedTuple

from rerankd import tracing
from rerankd.config import Settings
from rerankd.domain import Ranked, RerankQuery, TraceContext
from rerankd.router import Router, Target
from rerankd.validation import Limits, validate

_ACCESS = logging.getLogger("rerankd.access")


class CallIds(NamedTuple):
    """The ids one call is known by: the request id and the server's own span in the caller's trace."""

    request_id: str
    trace: TraceContext


def identify(explicit_request_id: str, message_trace: TraceContext, headers: Mapping[str, str]) -> CallIds:
    """Ids for one call from the message's own fields and lower-cased headers (or gRPC metadata)."""
    request_id = tracing.request_id(explicit_request_id, headers)
    caller = tracing.incoming(message_trace, headers)
    return CallIds(request_id, tracing.server_trace(caller))


class Pipeline:
    """Validation, deadline and tracing around Router.rerank, shared by every front door."""

    def __init__(self, router: Router, settings: Settings) -> None:
        self.router = router
        self.settings = settings
        self.limits = Limits.from_settings(settings)

    async def rerank(self, query: RerankQuery, time_remaining: float | None = None) -> Ranked:
        """Validate `query` and serve it within `time_remaining` (default: the configured budget).

        The query carries its request id and the server's trace context; provider calls get the
        matching traceparent and x-request-id headers.
        """
        validate(query, self.limits)
        budget = time_remaining if time_remaining is not None else self.settings.default_deadline_s
        deadline = time.monotonic() + budget
        return await self.router.rerank(
            query, deadline=deadline, headers=tracing.outbound_headers(query.trace, query.request_id)
        )

    def targets(self, model: str) -> list[Target]:
        """The targets `model` resolves to; errors.NotFound when nothing serves it."""
        return self.router.resolve(model)


def log_access(
    *,
    method: str,
    status: str,
    request_id: str,
    trace_id: str,
    model: str,
    provider: str,
    documents: int,
    started: float,
) -> None:
    """One structured access record (`started` is a time.perf_counter() value). No text, no keys."""
    if not _ACCESS.isEnabledFor(logging.INFO):
        return
    _ACCESS.info(
        "call",
        extra={
            "access": {
                "method": method,
                "status": status,
                "request_id": request_id,
                "trace_id": trace_id,
                "model": model or "default",
                "provider": provider,
                "documents": documents,
                "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
            }
        },
    )
