"""Trace context: read it from the request and gRPC metadata, generate what is missing, open
OpenTelemetry spans (server, provider attempt, local inference) and build the outbound headers
for provider calls.

Precedence (DESIGN.md): the message's `trace` field, then W3C `traceparent`/`tracestate`, then
`x-trace-id` / `x-span-id` / `x-parent-span-id` / `x-span-name` (and their `x-portkey-*` aliases).
Malformed ids are ignored, never fatal.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import random
import re
import sys
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace as otel
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from rerankd import errors
from rerankd.domain import TraceContext

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


# Ids come from `random` (Mersenne Twister, as OpenTelemetry's own RandomIdGenerator), not from
# `secrets`: they must be unique, not unguessable, and os.urandom gives up the GIL on every call,
# and on a busy server each give-up invites a switch to gRPC's poller thread.
def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


def _header(metadata: Mapping[str, str], name: str) -> str:
    return (metadata.get(name) or metadata.get(_PORTKEY[name]) or "").strip()


_PORTKEY = {
    name: name.replace("x-", "x-portkey-", 1)
    for name in ("x-trace-id", "x-span-id", "x-parent-span-id", "x-span-name")
}


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
    trace_id = message.trace_id.lower() if message.trace_id and _HEX32.match(message.trace_id.lower()) else ""
    caller_span = message.span_id.lower() if message.span_id and _HEX16.match(message.span_id.lower()) else ""
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
        tracestate=_header_safe(tracestate[:512]) if tracestate else "",
    )


def _header_safe(value: str) -> str:
    """`value` if it can go out as an HTTP header value (W3C tracestate is printable ASCII), else ""."""
    return value if _PRINTABLE_ASCII.match(value) else ""


_MAX_METADATA_HEADER_BYTES = 64 * 1024
MAX_METADATA_JSON_DEPTH = 16  # nesting of x-metadata's JSON; the json module recurses per level
# What nesting depth depends on: quotes (strings), escapes (so an escaped quote is not one) and brackets.
_JSON_STRUCTURE = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def json_depth_within(text: str, limit: int) -> bool:
    """Whether JSON `text` nests arrays and objects at most `limit` deep (brackets in strings do not
    count). One pass that stops at the first level past `limit`, so it never recurses."""
    depth, in_string = 0, False
    for match in _JSON_STRUCTURE.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "[{":
            depth += 1
            if depth > limit:
                return False
        else:
            depth -= 1
    return True


def header_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """Caller metadata from `x-metadata` (alias `x-portkey-metadata`): a JSON object whose values
    become strings (non-strings as JSON). Malformed, oversized or nested past
    MAX_METADATA_JSON_DEPTH -> INVALID_ARGUMENT naming the header (checked before parsing, so
    deep nesting never reaches the recursion limit); entry counts and sizes are checked with the
    message's metadata by validation.
    """
    name = "x-metadata" if headers.get("x-metadata") else "x-portkey-metadata"
    raw = headers.get(name, "")
    if not raw.strip():
        return {}
    if len(raw) > _MAX_METADATA_HEADER_BYTES:
        raise errors.invalid(name, f"is {len(raw)} bytes; at most {_MAX_METADATA_HEADER_BYTES} allowed")
    if not json_depth_within(raw, MAX_METADATA_JSON_DEPTH):
        raise errors.invalid(name, f"nests JSON deeper than {MAX_METADATA_JSON_DEPTH} levels")
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise errors.invalid(name, "is not valid JSON (expected a JSON object)") from None
    if not isinstance(parsed, dict):
        raise errors.invalid(name, f"must be a JSON object, not {type(parsed).__name__}")
    return {
        str(key): value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        for key, value in parsed.items()
        if value is not None
    }


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
    return f"{random.getrandbits(96):024x}"


def outbound_headers(trace: TraceContext, request_id_value: str) -> dict[str, str]:
    """Headers every provider call carries: traceparent (parent = our span), tracestate, request id."""
    headers = {"traceparent": f"00-{trace.trace_id}-{trace.span_id}-01", "x-request-id": request_id_value}
    if trace.tracestate:
        headers["tracestate"] = trace.tracestate
    return headers


# -- OpenTelemetry ------------------------------------------------------------------------------

# The server span takes the ids `server_trace` already chose (they went out in initial metadata
# before any work began): the id generator hands them out once, then generates as usual.
_PRESET_IDS: contextvars.ContextVar[tuple[int | None, int | None]] = contextvars.ContextVar(
    "rerankd_preset_ids", default=(None, None)
)


class _PresetIds(RandomIdGenerator):
    def generate_trace_id(self) -> int:
        preset = _PRESET_IDS.get()[0]
        return preset if preset is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        preset = _PRESET_IDS.get()[1]
        return preset if preset is not None else super().generate_span_id()


_provider: TracerProvider | None = None
_tracer: otel.Tracer | None = None
# Whether spans go anywhere (an exporter is set). When not, spans are ids only: a NonRecordingSpan
# carries the server's and each attempt's ids (so they still reach callers and providers) and the
# SDK, its attribute dicts and span processors are skipped (~10% of a call's CPU in the profile).
_recording = False
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _exporter_names() -> list[str]:
    """OTEL_TRACES_EXPORTER (a comma-separated list). Unset means otlp when an OTLP endpoint
    variable is set and none otherwise, so an unconfigured server does no tracing work."""
    names = [n.strip().lower() for n in _env("OTEL_TRACES_EXPORTER").split(",") if n.strip()]
    if not names:
        endpoint = any(_env(f"OTEL_EXPORTER_OTLP{kind}_ENDPOINT") for kind in ("", "_TRACES"))
        names = ["otlp"] if endpoint else []
    unknown = sorted(set(names) - set(EXPORTERS))
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} unsupported (use {', '.join(EXPORTERS)})"
        )
    return [] if "none" in names else names


def _otlp_protocol() -> str:
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf."""
    variable = next(
        (v for v in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") if _env(v)), ""
    )
    protocol = _env(variable).lower() if variable else "http/protobuf"
    if protocol not in PROTOCOLS:
        raise ValueError(f"{variable}: {protocol!r} unsupported (use {' or '.join(PROTOCOLS)})")
    return protocol


def check_environment() -> None:
    """Refuse unsupported OTEL_* values (ValueError naming the variable) without building anything:
    the CLI's preflight, so a bad value is one line before any port is bound."""
    if _env("OTEL_SDK_DISABLED").lower() != "true" and "otlp" in _exporter_names():
        _otlp_protocol()


def _exporters() -> list[SpanExporter]:
    """The span exporters the standard variables ask for; the OTLP exporters read the endpoint,
    headers, timeout, compression and certificates (OTEL_EXPORTER_OTLP_*) themselves."""
    exporters: list[SpanExporter] = []
    for name in _exporter_names():
        if name == "otlp" and _otlp_protocol() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

            exporters.append(Grpc())
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

            exporters.append(Http())
        else:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter(out=sys.stdout))  # stdout now, not at import
    return exporters


def resource(service_name: str = "rerankd") -> Resource:
    """service.name and service.version of rerankd unless OTEL_SERVICE_NAME or
    OTEL_RESOURCE_ATTRIBUTES set them; the rest of OTEL_RESOURCE_ATTRIBUTES as given."""
    from opentelemetry.sdk.resources import OTELResourceDetector

    from rerankd import __version__

    given = OTELResourceDetector().detect().attributes
    defaults = {"service.name": service_name, "service.version": __version__}
    return Resource.create({k: v for k, v in defaults.items() if k not in given})


def setup(exporter: SpanExporter | None = None, service_name: str = "rerankd") -> TracerProvider:
    """Install rerankd's tracer from the standard OTEL_* variables (OTEL_SDK_DISABLED,
    OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_*, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES);
    `exporter` (tests) replaces what they ask for. With no exporter, or the SDK disabled, spans are
    ids only (`_recording` is off): their ids are propagated, nothing is recorded or exported.
    """
    global _provider, _tracer, _recording
    if _provider is not None:
        _provider.shutdown()
    disabled = _env("OTEL_SDK_DISABLED").lower() == "true"
    exporters = [] if disabled else [exporter] if exporter is not None else _exporters()
    provider = TracerProvider(resource=resource(service_name), id_generator=_PresetIds())
    for chosen in exporters:
        processor: SpanProcessor = (
            SimpleSpanProcessor(chosen) if chosen is exporter else BatchSpanProcessor(chosen)
        )
        provider.add_span_processor(processor)
    _provider, _tracer = provider, provider.get_tracer("rerankd")
    _recording = bool(exporters)
    return provider


NO_ATTRIBUTES: Mapping[str, Any] = {}  # what spans that are ids only get: nothing is recorded


def recording() -> bool:
    """Whether spans are recorded and exported (else they are ids only: skip building attributes)."""
    return _recording


def shutdown() -> None:
    """Flush and stop span export."""
    if _provider is not None:
        _provider.shutdown()


def tracer() -> otel.Tracer:
    if _tracer is None:
        setup()
    assert _tracer is not None
    return _tracer


def _ids(span: otel.Span) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def open_server_span(trace: TraceContext, name: str, attributes: Mapping[str, Any]) -> otel.Span:
    """The server span of one call, started, with the ids of `trace` (from `server_trace`), child of
    the caller's span (`trace.parent_span_id`) when there is one. Not current and not ended: the
    call record ends it (`api.call.Call.finish`); `current(span)` makes it the parent of the
    attempt spans while the call's work runs.
    """
    if not _recording:
        return NonRecordingSpan(SpanContext(int(trace.trace_id, 16), int(trace.span_id, 16), False, _SAMPLED))
    parent = otel_context.Context()
    if _HEX16.match(trace.parent_span_id):
        remote = SpanContext(
            int(trace.trace_id, 16), int(trace.parent_span_id, 16), True, TraceFlags(TraceFlags.SAMPLED)
        )
        parent = otel.set_span_in_context(NonRecordingSpan(remote), parent)
    # The SDK's id generator takes no arguments, so the ids already chosen (they went out to the
    # caller before any work) reach it beside the call: set and reset around this one start_span,
    # never across an await.
    token = _PRESET_IDS.set((int(trace.trace_id, 16), int(trace.span_id, 16)))
    try:
        return tracer().start_span(name, context=parent, kind=SpanKind.SERVER, attributes=dict(attributes))
    finally:
        _PRESET_IDS.reset(token)


@contextlib.contextmanager
def current(span: otel.Span) -> Iterator[otel.Span]:
    """`span` as the current span for the block, not ended after it. Use it around awaits in one
    task, not across an async generator's yields."""
    token = otel_context.attach(otel.set_span_in_context(span))
    try:
        yield span
    finally:
        otel_context.detach(token)


@contextlib.contextmanager
def child_span(
    name: str, attributes: Mapping[str, Any], kind: SpanKind = SpanKind.INTERNAL
) -> Iterator[otel.Span]:
    """A span under the current one (provider attempt: kind CLIENT; local inference: INTERNAL)."""
    if not _recording:
        parent = otel.get_current_span().get_span_context()
        trace_id = parent.trace_id if parent.is_valid else random.getrandbits(128) or 1
        ids = SpanContext(trace_id, random.getrandbits(64) or 1, False, _SAMPLED)
        with current(NonRecordingSpan(ids)) as span:
            yield span
        return
    with tracer().start_as_current_span(
        name, kind=kind, attributes=dict(attributes), record_exception=False
    ) as span:
        try:
            yield span
        except errors.RerankError as exc:  # status ERROR comes from the SDK; error.type from here
            if "error.type" not in (getattr(span, "attributes", None) or {}):
                span.set_attribute("error.type", exc.code.name)
            raise


# -- Semantic conventions -----------------------------------------------------------------------
# OpenTelemetry's: RPC/gRPC server spans (rpc.system, rpc.service, rpc.method, rpc.grpc.status_code
# as instrumentations of semconv <= 1.37 emit them, plus the newer string rpc.response.status_code),
# HTTP server and client spans (stable since semconv 1.23), error.type. Only called while recording.

# gRPC codes that make a SERVER span an error (semconv rpc/grpc.md); a CLIENT span errs on any but OK.
GRPC_SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)
_HTTP_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})


def grpc_server_attributes(full_method: str) -> dict[str, Any]:
    """`rerankd.v1.RerankService/Rerank` -> rpc.system, rpc.service, rpc.method."""
    service, _, method = full_method.rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


def http_server_attributes(
    scope: Mapping[str, Any], headers: Mapping[str, str], route: str
) -> dict[str, Any]:
    """The HTTP server span's attributes from an ASGI request: method, route, path, scheme, the
    Host the caller used, protocol version, user agent, client address (no query, no header values
    beyond those)."""
    method = scope.get("method", "")
    attributes: dict[str, Any] = {
        "http.request.method": method if method in _HTTP_METHODS else "_OTHER",
        "http.route": route,
        "url.path": scope.get("path", ""),
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if method not in _HTTP_METHODS:
        attributes["http.request.method_original"] = method
    host, port = _host_port(headers.get("host", ""))
    if host:
        attributes["server.address"] = host
        if port is not None:
            attributes["server.port"] = port
    if headers.get("user-agent"):
        attributes["user_agent.original"] = headers["user-agent"]
    client = scope.get("client")
    if client:
        attributes["client.address"], attributes["client.port"] = client[0], int(client[1])
    return attributes


def _host_port(authority: str) -> tuple[str, int | None]:
    """`host:port`, `host`, `[::1]:8080` or `[::1]` -> (host, port or None)."""
    host, sep, port = authority.rpartition(":")
    if not sep or not port.isdigit() or (host.startswith("[") != host.endswith("]")):
        return authority.strip("[]"), None
    return host.strip("[]"), int(port)


def end_server_span(span: otel.Span, status: str, http_status: int | None) -> None:
    """The call's outcome on its server span: gRPC (`http_status` None) or HTTP (0: no response
    was sent, the caller had gone). Status ERROR only for the server-side failures of each
    convention: gRPC's GRPC_SERVER_ERRORS, HTTP 5xx; error.type names them."""
    if http_status is None:
        span.set_attribute("rpc.grpc.status_code", grpc.StatusCode[status].value[0])
        span.set_attribute("rpc.response.status_code", status)
        if status in GRPC_SERVER_ERRORS:
            span.set_attribute("error.type", status)
            span.set_status(Status(StatusCode.ERROR))
        return
    if http_status:
        span.set_attribute("http.response.status_code", http_status)
    if http_status >= 500:
        span.set_attribute("error.type", str(http_status))
        span.set_status(Status(StatusCode.ERROR))


def end_attempt_span(span: otel.Span, outcome: str) -> None:
    """A provider attempt's outcome (a gRPC status name): ERROR unless OK, with error.type (the
    HTTP status or transport failure the HTTP layer set, else the outcome)."""
    span.set_attribute("rerankd.outcome", outcome)
    if outcome != "OK":
        if "error.type" not in (getattr(span, "attributes", None) or {}):
            span.set_attribute("error.type", outcome)
        span.set_status(Status(StatusCode.ERROR, outcome))


@functools.lru_cache(maxsize=1024)
def _client_url(url: str) -> dict[str, Any]:
    """server.address, server.port and url.full of a provider URL: no credentials in the authority,
    every query value REDACTED (keys kept: `?api-version=REDACTED`)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme, 0)
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    query = "&".join(
        f"{key}=REDACTED" if value else key
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    )
    full = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    return {"server.address": host, "server.port": port, "url.full": full}


@contextlib.contextmanager
def http_client_span(method: str, url: str) -> Iterator[otel.Span]:
    """The span of one provider HTTP request, with the HTTP client conventions (named by the
    method): the current attempt span, or, when that one already describes an earlier request of
    the same attempt (a provider call split into several, e.g. passages past the provider's batch),
    a CLIENT span of its own under it, so that each request has one span."""
    known = method if method in _HTTP_METHODS else ""
    attributes = {"http.request.method": known or "_OTHER", **_client_url(url)}
    current = otel.get_current_span()
    if "http.request.method" not in (getattr(current, "attributes", None) or {}):
        current.update_name(known or "HTTP")
        current.set_attributes(attributes)
        yield current
        return
    with tracer().start_as_current_span(
        known or "HTTP", kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
    ) as span:
        yield span


def http_client_response(status: int) -> None:
    """The answer's status on the current request span (4xx and 5xx are errors of a CLIENT span)."""
    span = otel.get_current_span()
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))


def http_client_failure(kind: type[BaseException]) -> None:
    """No answer (connection refused, reset, timed out): error.type is the exception's class."""
    otel.get_current_span().set_attribute("error.type", f"{kind.__module__}.{kind.__qualname__}")


def inject(headers: Mapping[str, str], span: otel.Span) -> dict[str, str]:
    """`headers` with traceparent pointing at `span` (the attempt span becomes the provider's parent)."""
    trace_id, span_id = _ids(span)
    return {**headers, "traceparent": f"00-{trace_id}-{span_id}-01"}
