"""Prometheus instruments, and the /metrics HTTP endpoint on its own port.

Names follow Prometheus conventions (`_total` counters, `_seconds` histograms). Label values are
bounded: methods, status code names, configured model/provider names, outcomes. Callers' free text
never becomes a label: a name a route answers through its `match` patterns (the drop-in names:
`rerank-v3.5`) is counted under that route's name, another unknown model name as "unknown", and a
target the configuration does not name (a caller's ad-hoc "provider/model") as model or target
"other", so a caller inventing names cannot add series. Every label value is free of spaces
(methods are `rerankd.v1.RerankService/Rerank` or `http/<dialect>`; configured names are checked by
config).

The registry also carries prometheus_client's process, platform and GC collectors (`process_*`,
`python_info`, `python_gc_*`) and `rerankd_build_info` (value 1; the versions as labels). No
`*_created` series: they double the sample count for a value Prometheus does not use.
"""

from __future__ import annotations

import fnmatch
import platform
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import TypeVar

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.metrics import MetricWrapperBase

import rerankd

# Process-wide in prometheus_client (it reads the switch when a scrape collects), and rerankd owns
# its process; PROMETHEUS_DISABLE_CREATED_SERIES would do the same from the environment.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

CALLS = Counter(
    "rerankd_calls",
    "Calls answered, by method, status code, model name and provider.",
    ["method", "status", "model", "provider"],
    registry=REGISTRY,
)
CALL_SECONDS = Histogram(
    "rerankd_call_duration_seconds",
    "Call latency in seconds, by method and status code.",
    ["method", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "rerankd_in_flight_calls", "Calls being served now, by method.", ["method"], registry=REGISTRY
)
ATTEMPTS = Counter(
    "rerankd_provider_attempts",
    "Provider attempts, by provider, model and outcome (gRPC code name).",
    ["provider", "model", "outcome"],
    registry=REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "rerankd_provider_attempt_duration_seconds",
    "Provider attempt latency in seconds, by provider.",
    ["provider"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RETRIES = Counter(
    "rerankd_retries", "Retries of a provider target, by provider.", ["provider"], registry=REGISTRY
)
FALLBACKS = Counter(
    "rerankd_fallbacks", "Fallbacks from one target to the next, by route name.", ["route"], registry=REGISTRY
)
HEDGES = Counter(
    "rerankd_hedges",
    "Hedged requests by route: sent, won (the hedge's answer was used), refused (over the budget).",
    ["route", "result"],
    registry=REGISTRY,
)
BREAKER_STATE = Gauge(
    "rerankd_breaker_state",
    "Circuit breaker state per target: 0 closed, 1 half-open, 2 open.",
    ["target"],
    registry=REGISTRY,
)
BREAKER_TRANSITIONS = Counter(
    "rerankd_breaker_transitions",
    "Breaker state changes, by target and new state.",
    ["target", "state"],
    registry=REGISTRY,
)
DOCUMENTS = Counter(
    "rerankd_documents_scored", "Documents scored, by provider.", ["provider"], registry=REGISTRY
)
# The local model scores each pair as a batch of one (rerankd.local.model says why), so the useful
# "batch" figure is pairs per request, coalesced by the fair scheduler across requests.
LOCAL_PAIRS = Histogram(
    "rerankd_local_request_pairs",
    "Pairs per request handed to the local model's scheduler.",
    buckets=(1, 4, 16, 32, 64, 128, 256, 1024, 4096),
    registry=REGISTRY,
)
LOCAL_QUEUE_SECONDS = Histogram(
    "rerankd_local_queue_wait_seconds",
    "Time a request's pairs waited in the local scheduler before the first one was scored.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
LOCAL_QUEUED = Gauge(
    "rerankd_local_queue_pairs",
    "Pairs waiting in a local model's scheduler (admitted, not yet scored), by provider.",
    ["provider"],
    registry=REGISTRY,
)
LOCAL_QUEUE_CAPACITY = Gauge(
    "rerankd_local_queue_capacity_pairs",
    "A local model's queue bound (max_queued_pairs): past it, RESOURCE_EXHAUSTED; by provider.",
    ["provider"],
    registry=REGISTRY,
)

# Security (rerankd.api.grpc_guard, rerankd.ratelimit). Caller names come from the token file or
# client certificates signed by the configured CA, so they are a bounded label.
CALLER_CALLS = Counter(
    "rerankd_caller_calls",
    "Authenticated calls finished, by caller name, method and status code.",
    ["caller", "method", "status"],
    registry=REGISTRY,
)
AUTH_REFUSALS = Counter(
    "rerankd_auth_refusals",
    "Calls refused UNAUTHENTICATED, by reason (NO_CREDENTIALS, INVALID_TOKEN).",
    ["reason"],
    registry=REGISTRY,
)
PERMISSION_DENIED = Counter(
    "rerankd_permission_denied",
    "Calls refused PERMISSION_DENIED by a caller's permissions (rerankd.authz), by caller name and reason"
    " (MODEL_NOT_ALLOWED, TOO_MANY_DOCUMENTS).",
    ["caller", "reason"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "rerankd_rate_limited",
    "Calls refused RESOURCE_EXHAUSTED by a caller's rate limit, by caller name.",
    ["caller"],
    registry=REGISTRY,
)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"


BUILD_INFO = Gauge(
    "rerankd_build_info",
    "Always 1; the labels say which rerankd and which runtime libraries serve.",
    ["version", "python", "grpc", "protobuf", "onnxruntime", "opentelemetry_sdk"],
    registry=REGISTRY,
)
BUILD_INFO.labels(
    rerankd.__version__,
    platform.python_version(),
    grpc.__version__,
    _version("protobuf"),
    _version("onnxruntime"),  # "none" in a client-only or hosted-only install
    _version("opentelemetry-sdk"),
).set(1)

_M = TypeVar("_M", bound=MetricWrapperBase)
_CHILDREN: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
_MAX_CHILDREN = 4096


def child(metric: _M, *values: str) -> _M:
    """`metric.labels(*values)`, remembered: the hot path asks for the same few children on every
    call, and labels() converts, validates and locks each time. Label values must be bounded (they
    are everywhere here), and the memo is bounded too.
    """
    key = (id(metric), values)
    found = _CHILDREN.get(key)
    if found is None:
        if len(_CHILDREN) >= _MAX_CHILDREN:
            _CHILDREN.clear()
        found = _CHILDREN[key] = metric.labels(*values)
    return found  # type: ignore[return-value]


_KNOWN_MODELS: set[str] = {"default"}
_KNOWN_TARGETS: set[str] = set()  # "provider/model" of every configured target
_PATTERNS: list[tuple[str, str]] = []  # (glob, route name) of the routes' `match`, in config order
OTHER = "other"  # the one label value of every target the configuration does not name


def know_models(names: Iterable[str]) -> None:
    """Register the model names and aliases the server serves (the only model label values)."""
    _KNOWN_MODELS.update(names)


def know_targets(labels: Iterable[str]) -> None:
    """Register configured targets ("provider/model"): the only target and attempt-model labels."""
    _KNOWN_TARGETS.update(labels)


def know_patterns(patterns: Iterable[tuple[str, str]]) -> None:
    """Set the routes' `match` patterns ((glob, route name), in the order the router tries them):
    a name one of them answers is counted under that route's name. The router being built gives
    all of its patterns, replacing any earlier router's (names and targets only ever add labels,
    but an earlier router's patterns would count this one's names under routes it does not have)."""
    _PATTERNS[:] = dict.fromkeys(patterns)


def model_label(name: str) -> str:
    """The model label of a call for `name`: the name when it is configured, the route that answers
    it through a `match` pattern, else "unknown"."""
    name = name or "default"
    if name in _KNOWN_MODELS:
        return name
    return _matched_route(name) or "unknown"


def _matched_route(name: str) -> str:
    """The route whose pattern answers `name`, as the router picks it ("" when none does). An
    explicit "provider/model" is resolved before any pattern, so it never counts under one."""
    if _PATTERNS and not ("/" in name and f"{name.partition('/')[0]}/" in _provider_prefixes()):
        for pattern, route in _PATTERNS:
            if fnmatch.fnmatchcase(name, pattern):
                return route
    return ""


def _provider_prefixes() -> set[str]:
    return {target.partition("/")[0] + "/" for target in _KNOWN_TARGETS}


def target_label(target: str) -> str:
    """`target` ("provider/model") if configured, else OTHER."""
    return target if target in _KNOWN_TARGETS else OTHER


def attempt_model_label(target: str, model: str) -> str:
    """The model label of an attempt at `target`: its model if the target is configured, else OTHER."""
    return model if target in _KNOWN_TARGETS else OTHER


def on_resilience_event(name: str, labels: Mapping[str, str]) -> None:
    """Mirror the router's resilience events (rerankd.resilience.events) into Prometheus. Provider
    names are configured ones; targets and routes outside the configuration count as OTHER."""
    if name == "retry":
        RETRIES.labels(labels.get("target", "").split("/", 1)[0]).inc()
    elif name == "fallback":
        route = labels.get("route", "")
        FALLBACKS.labels(route if route in _KNOWN_MODELS else _matched_route(route) or OTHER).inc()
    elif name == "hedge":
        route = labels.get("route", "")
        route = route if route in _KNOWN_MODELS else _matched_route(route) or OTHER
        HEDGES.labels(route, labels.get("result", "")).inc()
    elif name == "breaker":
        target, state = target_label(labels.get("target", "")), labels.get("to_state", "")
        BREAKER_TRANSITIONS.labels(target, state).inc()
        BREAKER_STATE.labels(target).set(_BREAKER_LEVELS.get(state, 0))


_BREAKER_LEVELS = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}


def serve_metrics(host: str, port: int) -> tuple[int, Callable[[], None]]:
    """Start the /metrics endpoint in a background thread; returns the bound port and a stopper."""
    server, thread = start_http_server(port, addr=host, registry=REGISTRY)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return int(server.server_address[1]), stop
