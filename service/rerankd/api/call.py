"""One call's record, from the front door to its ending.

A front door (gRPC servicer, HTTP app) opens a `Call` as soon as it knows the call's ids, fills in
what it learns (model, documents, provider, attempts) and ends it with `Call.finish(status)`,
exactly once, however the call ends: an answer (OK), an error (its status), the caller leaving
(CANCELLED), the deadline (DEADLINE_EXCEEDED), the drain. `finish` is the one place that writes the
access line and every per-call metric (calls, latency, per-caller calls, the in-flight gauge) and
ends the server span with the call's status; a second `finish` does nothing and says so.

Method labels are stable and free of spaces: the gRPC method's full name
(`rerankd.v1.RerankService/Rerank`) or `http/<dialect>` (`http/cohere-v2`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace as otel

from rerankd import errors, metrics, tracing
from rerankd.domain import Ranked, TraceContext

_ACCESS = logging.getLogger("rerankd.access")
OK = "OK"


class Call:
    """What one call is known by and how it ended (see the module docstring)."""

    __slots__ = (
        "_access_line",
        "_in_flight",
        "attempts",
        "caller",
        "documents",
        "http_status",
        "method",
        "model",
        "provider",
        "request_id",
        "span",
        "started",
        "status",
        "trace",
    )

    def __init__(
        self,
        method: str,
        request_id: str,
        trace: TraceContext,
        *,
        caller: str = "",
        access_line: bool = True,
        span_name: str = "",
        span_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.method = method
        self.request_id = request_id
        self.trace = trace
        self.caller = caller
        self.started = time.perf_counter()
        self.model = ""
        self.documents = 0
        self.provider = ""
        self.attempts = 0
        self.status = ""  # set once, by finish()
        # The HTTP status the HTTP front door answered (0 until then, and when the caller had
        # gone); None for gRPC calls. The span's conventions follow it (tracing.end_server_span).
        self.http_status: int | None = 0 if method.startswith("http/") else None
        self._access_line = access_line
        self._in_flight = metrics.child(metrics.IN_FLIGHT, method)
        self._in_flight.inc()
        self.span: otel.Span = tracing.open_server_span(
            trace,
            span_name or method,
            span_attributes if span_attributes is not None else tracing.NO_ATTRIBUTES,
        )

    @property
    def finished(self) -> bool:
        return bool(self.status)

    def answered(self, ranked: Ranked) -> None:
        """Note what served the call (before its answer goes out)."""
        self.provider = ranked.provider
        self.attempts = len(ranked.attempts)

    def failed(self, error: errors.RerankError) -> None:
        """Note the provider an error came from, when it names one."""
        if error.provider:
            self.provider = error.provider

    def id_metadata(self) -> tuple[tuple[str, str], ...]:
        """The call's ids as response metadata: request id, trace id, the server's span id."""
        return (
            ("x-request-id", self.request_id),
            ("x-trace-id", self.trace.trace_id),
            ("x-span-id", self.trace.span_id),
        )

    def finish(self, status: str) -> bool:
        """End the call with `status` (a gRPC status name); False if it had already ended."""
        if self.status:
            return False
        self.status = status
        elapsed = time.perf_counter() - self.started
        self._in_flight.dec()
        metrics.child(
            metrics.CALLS, self.method, status, metrics.model_label(self.model), self.provider
        ).inc()
        metrics.child(metrics.CALL_SECONDS, self.method, status).observe(elapsed)
        if self.caller:
            metrics.child(metrics.CALLER_CALLS, self.caller, self.method, status).inc()
        span = self.span
        if span.is_recording():
            span.set_attribute("rerankd.status", status)
            if self.provider:
                span.set_attribute("rerankd.provider", self.provider)
                span.set_attribute("rerankd.attempts", self.attempts)
            tracing.end_server_span(span, status, self.http_status)
        span.end()
        if self._access_line and _ACCESS.isEnabledFor(logging.INFO):
            fields = {
                "method": self.method,
                "status": status,
                "request_id": self.request_id,
                "trace_id": self.trace.trace_id,
                "model": self.model or "default",
                "provider": self.provider,
                "documents": self.documents,
                "latency_ms": round(elapsed * 1000.0, 3),
            }
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                _write_access(fields)
            else:
                # Written on the loop's next turn, in this call's context (the caller's name): by
                # then the front door has handed its answer over, so the line costs no latency.
                loop.call_soon(_write_access, fields)
        return True


def _write_access(fields: dict[str, object]) -> None:
    _ACCESS.info("call", extra={"access": fields})
