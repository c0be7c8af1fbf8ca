"""The steps every front door shares, so gRPC and HTTP serve a request the same way.

    identify()        request id and the server's span, from the caller's ids and headers/metadata
    Pipeline.rerank() the server span and in-flight gauge around: the caller's permissions
                      (rerankd.authz), validate, set the deadline, build the outbound trace
                      headers, call the router
    Pipeline.targets() what a model name resolves to (for dialect checks made before any work)
    log_access()      one access-log record and the call metrics per call (never text);
                      Pipeline.log_access applies the server's access_log_enabled

A front door only converts its wire format to a RerankQuery and the Ranked answer back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from opentelemetry.trace import Status, StatusCode

from rerankd import auth, authz, errors, metrics, tracing
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

    async def rerank(
        self, query: RerankQuery, time_remaining: float | None = None, *, method: str = "Rerank"
    ) -> Ranked:
        """Validate `query` and serve it within `time_remaining` (default: the configured budget).

        The query carries its request id and the server's trace context; the server span gets
        those ids, and provider calls get x-request-id and a traceparent under their attempt span.
        """
        attributes = (
            {
                "rpc.method": method,
                "rerankd.request_id": query.request_id,
                "rerankd.model": query.model or "default",
                "rerankd.documents": len(query.documents),
            }
            if tracing.recording()
            else tracing.NO_ATTRIBUTES
        )
        with (
            metrics.child(metrics.IN_FLIGHT, method).track_inprogress(),
            tracing.server_span(query.trace, f"rerankd.{method}", attributes) as span,
        ):
            try:
                authz.check(auth.current_caller(), query.model, len(query.documents))  # PERMISSION_DENIED
                validate(query, self.limits)
                budget = time_remaining if time_remaining is not None else self.settings.default_deadline_s
                deadline = time.monotonic() + budget
                ranked = await self.router.rerank(
                    query, deadline=deadline, headers=tracing.outbound_headers(query.trace, query.request_id)
                )
            except errors.RerankError as exc:
                span.set_attribute("rerankd.status", exc.code.name)
                span.set_status(Status(StatusCode.ERROR, exc.code.name))
                raise
            if span.is_recording():
                span.set_attributes(
                    {
                        "rerankd.status": "OK",
                        "rerankd.provider": ranked.provider,
                        "rerankd.provider_model": ranked.model,
                        "rerankd.attempts": len(ranked.attempts),
                    }
                )
            return ranked

    def log_access(self, **fields: Any) -> None:
        """`log_access` with this server's settings: no line when `access_log_enabled` is off."""
        log_access(**fields, line=self.settings.access_log_enabled)

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
    line: bool = True,
) -> None:
    """One structured access record and the call metrics (`started`: a time.perf_counter() value).
    No text, no keys; a model name nothing serves is counted as "unknown" (bounded labels). With
    `line` off (Settings.access_log_enabled) only the metrics are recorded.
    """
    elapsed = time.perf_counter() - started
    metrics.child(metrics.CALLS, method, status, metrics.model_label(model), provider).inc()
    metrics.child(metrics.CALL_SECONDS, method, status).observe(elapsed)
    if not line or not _ACCESS.isEnabledFor(logging.INFO):
        return
    fields = {
        "method": method,
        "status": status,
        "request_id": request_id,
        "trace_id": trace_id,
        "model": model or "default",
        "provider": provider,
        "documents": documents,
        "latency_ms": round(elapsed * 1000.0, 3),
    }
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _write_access(fields)
        return
    # Written on the loop's next turn, in this call's context (the caller's name): by then the front
    # door has handed its answer to gRPC or uvicorn, so the line costs the caller no latency.
    loop.call_soon(_write_access, fields)


def _write_access(fields: dict[str, object]) -> None:
    _ACCESS.info("call", extra={"access": fields})
