"""Trace context: read it from the request and gRPC metadata, generate what is missing, and build
the outbound headers for provider calls.

Precedence (DESIGN.md): the message's `trace` field, then W3C `traceparent`/`tracestate`, then
`x-trace-id` / `x-span-id` / `x-parent-span-id` / `x-span-name` (and their `x-portkey-*` aliases).
Malformed ids are ignored, never fatal.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

from rerankd.domain import TraceContext

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def _header(metadata: Mapping[str, str], name: str) -> str:
    return (metadata.get(name) or metadata.get(name.replace("x-", "x-portkey-", 1)) or "").strip()


def parse_traceparent(value: str) -> tuple[str, str] | None:
    """(trace_id, span_id) from a W3C traceparent, or None if malformed or all-zero."""
    match = _TRACEPARENT.match(value.strip().lower())
    if not match or match.group(1) == "ff":
        return None
    trace_id, span_id = match.group(2), match.group(3)
    if set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None
    return trace_id, span_id


def incoming(message: TraceContext, metadata: Mapping[str, str]) -> TraceContext:
    """The caller's trace context: trace id and the caller's span (our parent)."""
    trace_id = message.trace_id.lower() if _HEX32.match(message.trace_id.lower()) else ""
    caller_span = message.span_id.lower() if _HEX16.match(message.span_id.lower()) else ""
    tracestate = message.tracestate
    if not trace_id:
        parsed = parse_traceparent(metadata.get("traceparent", ""))
        if parsed:
            trace_id, caller_span = parsed
            tracestate = tracestate or metadata.get("tracestate", "")
    if not trace_id:
        header_trace = _header(metadata, "x-trace-id").lower().replace("-", "")
        if _HEX32.match(header_trace):
            trace_id = header_trace
            header_span = _header(metadata, "x-span-id").lower()
            caller_span = header_span if _HEX16.match(header_span) else ""
    return TraceContext(
        trace_id=trace_id or new_trace_id(),
        span_id=caller_span,
        parent_span_id=message.parent_span_id or _header(metadata, "x-parent-span-id"),
        span_name=(message.span_name or _header(metadata, "x-span-name"))[:200],
        tracestate=tracestate[:512],
    )


def server_trace(caller: TraceContext) -> TraceContext:
    """The server's own span in the caller's trace: its parent is the caller's span."""
    return TraceContext(
        trace_id=caller.trace_id,
        span_id=new_span_id(),
        parent_span_id=caller.span_id,
        span_name=caller.span_name,
        tracestate=caller.tracestate,
    )


def request_id(explicit: str, metadata: Mapping[str, str]) -> str:
    """The caller's request id (message field, then x-request-id) if well-formed, else a new one."""
    for candidate in (explicit, metadata.get("x-request-id", "")):
        candidate = candidate.strip()
        if candidate and _REQUEST_ID.match(candidate):
            return candidate
    return secrets.token_hex(12)


def outbound_headers(trace: TraceContext, request_id_value: str) -> dict[str, str]:
    """Headers every provider call carries: traceparent (parent = our span), tracestate, request id."""
    headers = {"traceparent": f"00-{trace.trace_id}-{trace.span_id}-01", "x-request-id": request_id_value}
    if trace.tracestate:
        headers["tracestate"] = trace.tracestate
    return headers
