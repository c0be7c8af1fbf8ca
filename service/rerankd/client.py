"""Typed Python client for rerankd: sync `RerankClient` and asyncio `AsyncRerankClient`.

Every call has a deadline (the client's `timeout` unless the call gives its own), UNAVAILABLE is
retried by gRPC itself through the channel's service config (`SERVICE_CONFIG`: 4 attempts with
jittered exponential back-off and retry throttling), and trace context travels as W3C `traceparent`
metadata or in `RerankRequest.trace`.

    with RerankClient("127.0.0.1:50051") as client:
        reply = client.rerank("capital of France?", ["Berlin is ...", "Paris is ..."], top_n=1)
        print(reply.results[0].index, reply.trace_id)

Errors are the `grpc.RpcError` the call ended with (`grpc.aio.AioRpcError` for the async client).
`call_error(exc)` decodes one into a `CallError`: the code, the message, the request and trace ids
(from the error's trailing metadata), the fields at fault (BadRequest), the retry delay (RetryInfo)
and the reason and provider (ErrorInfo). A deadline that passes ends the call with
DEADLINE_EXCEEDED, a cancelled call with CANCELLED (`call_error(exc).code` says which); a stream
the caller stops reading early is cancelled, which the server counts as CANCELLED.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

import grpc
import grpc.aio
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from rerankd.tracing import new_span_id, new_trace_id, parse_traceparent
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "SERVICE_CONFIG",
    "AsyncRerankClient",
    "CallError",
    "RerankClient",
    "RerankOptions",
    "RerankReply",
    "StreamReply",
    "call_error",
    "channel_options",
    "collect_stream",
    "make_traceparent",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
]

DEFAULT_TIMEOUT_S = 30.0
"""Deadline of a call that names none (gRPC itself has no default deadline)."""

_RETRY_POLICY = {
    "maxAttempts": 4,  # the first try and up to 3 retries
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    # Only "not processed, try again": every other code is the caller's or the server's to fix.
    "retryableStatusCodes": ["UNAVAILABLE"],
}

SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [
        {
            "name": [{"service": "rerankd.v1.RerankService"}, {"service": "grpc.health.v1.Health"}],
            "retryPolicy": _RETRY_POLICY,
        }
    ],
    # Each failure costs a token, each success gives back 0.1; retries stop below 5 tokens, so a
    # server that is down gets the first tries only, not 4x the traffic.
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
}
"""The gRPC service config every channel of these clients uses (retries as in gRFC A6)."""

_HEADERS = ("x-trace-id", "x-request-id", "x-provider", "x-attempts", "x-cache")

DocumentLike = str | pb.Document


def channel_options(extra: Sequence[tuple[str, Any]] = (), *, retries: bool = True) -> list[tuple[str, Any]]:
    """Channel options: retries through `SERVICE_CONFIG` (unless `retries` is false), then `extra`."""
    options: list[tuple[str, Any]] = []
    if retries:
        options += [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(SERVICE_CONFIG))]
    else:
        options.append(("grpc.enable_retries", 0))
    return options + list(extra)


def make_traceparent(trace_id: str | None = None, span_id: str | None = None, *, sampled: bool = True) -> str:
    """A W3C traceparent ("00-<trace id>-<span id>-<flags>"); missing ids are generated."""
    trace_id, span_id = (trace_id or new_trace_id()).lower(), (span_id or new_span_id()).lower()
    value = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
    if parse_traceparent(value) is None:
        raise ValueError(f"not a valid traceparent: {value!r} (ids are 32 and 16 lowercase hex characters)")
    return value


@dataclass(frozen=True, slots=True)
class RerankReply:
    """A Rerank answer: the response message plus the trace headers the server sent with it."""

    response: pb.RerankResponse
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def results(self) -> list[pb.RerankResult]:
        """Results, most relevant first."""
        return list(self.response.results)

    @property
    def indices(self) -> list[int]:
        """Positions of the ranked documents in the request, most relevant first."""
        return [result.index for result in self.response.results]

    @property
    def trace_id(self) -> str:
        return self.response.trace.trace_id or self.headers.get("x-trace-id", "")

    @property
    def request_id(self) -> str:
        return self.response.id or self.headers.get("x-request-id", "")


@dataclass(frozen=True, slots=True)
class StreamReply:
    """A RerankStream answer folded back together: header, final results in rank order, summary."""

    header: pb.RerankStreamHeader
    results: list[pb.RerankResult]
    summary: pb.RerankStreamSummary
    messages: int

    @property
    def indices(self) -> list[int]:
        return [result.index for result in self.results]

    @property
    def trace_id(self) -> str:
        return self.header.trace.trace_id


def collect_stream(messages: Iterable[pb.RerankStreamResponse]) -> StreamReply:
    """Fold a RerankStream answer into one `StreamReply` (partial results are left out)."""
    header, summary = pb.RerankStreamHeader(), pb.RerankStreamSummary()
    results: list[pb.RerankResult] = []
    count = 0
    for message in messages:
        count += 1
        event = message.WhichOneof("event")
        if event == "header":
            header = message.header
        elif event == "results" and not message.results.partial:
            results.extend(message.results.results)
        elif event == "summary":
            summary = message.summary
    return StreamReply(header=header, results=results, summary=summary, messages=count)


@dataclass(frozen=True, slots=True)
class CallError:
    """What a failed call said, decoded (see `call_error`)."""

    code: grpc.StatusCode
    message: str
    request_id: str = ""
    trace_id: str = ""
    reason: str = ""  # ErrorInfo.reason, e.g. "MODEL_NOT_FOUND", "PROVIDER_UNAVAILABLE"
    provider: str = ""  # the provider the error came from, when one did
    retryable: bool = False
    retry_after: float | None = None  # seconds (RetryInfo), when the server suggests a wait
    fields: dict[str, str] = field(default_factory=dict)  # field -> what is wrong (BadRequest)


def call_error(exc: grpc.RpcError) -> CallError:
    """Decode the error a call ended with (a `grpc.RpcError` that is also a `grpc.Call`, as the
    errors of both clients are): status, ids from its trailing metadata, rich details."""
    call: Any = exc
    headers = _trace_headers(call.trailing_metadata())
    found: dict[str, Any] = {}
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # details that contradict the status line: keep the status line
        status = None
    for packed in status.details if status is not None else ():
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            found["reason"] = info.reason
            found["provider"] = info.metadata.get("provider", "")
            found["retryable"] = info.metadata.get("retryable") == "true"
            headers.setdefault("x-request-id", info.metadata.get("request_id", ""))
        elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            packed.Unpack(retry)
            found["retry_after"] = retry.retry_delay.ToNanoseconds() / 1e9
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            found["fields"] = {v.field: v.description for v in bad.field_violations}
    return CallError(
        code=call.code(),
        message=call.details() or "",
        request_id=headers.get("x-request-id", ""),
        trace_id=headers.get("x-trace-id", ""),
        **found,
    )


class RerankOptions(TypedDict, total=False):
    """Keyword arguments of `rerank` and `rerank_stream` besides `timeout`; all optional."""

    model: str  # model name or alias; "" (the default) is the server's default model
    top_n: int  # how many results, best first; 0 returns all
    return_documents: bool  # echo each result's document
    rank_fields: Sequence[str]  # score these Document.fields instead of the text
    truncation: pb.Truncation  # pb.TRUNCATION_END (default) or pb.TRUNCATION_NONE
    max_tokens_per_doc: int  # cut each document to this many tokens; 0: the model's limit
    parameters: Mapping[str, Any]  # provider-specific options (JSON-able)
    trace: pb.TraceContext  # RerankRequest.trace; wins over the trace metadata below
    traceparent: str  # W3C traceparent metadata (see `make_traceparent`)
    tracestate: str  # W3C tracestate metadata, sent along with traceparent
    request_id: str  # RerankRequest.request_id, also sent as x-request-id metadata
    metadata: Mapping[str, str]  # RerankRequest.metadata (caller metadata for logs and traces)
    headers: Sequence[tuple[str, str]]  # further gRPC metadata


def _document(doc: DocumentLike) -> pb.Document:
    return pb.Document(text=doc) if isinstance(doc, str) else doc


def _request(query: str, documents: Sequence[DocumentLike], options: RerankOptions) -> pb.RerankRequest:
    request = pb.RerankRequest(
        model=options.get("model", ""),
        query=query,
        documents=[_document(doc) for doc in documents],
        top_n=options.get("top_n", 0),
        return_documents=options.get("return_documents", False),
        rank_fields=list(options.get("rank_fields", ())),
        truncation=options.get("truncation", pb.TRUNCATION_UNSPECIFIED),
        max_tokens_per_doc=options.get("max_tokens_per_doc", 0),
        trace=options.get("trace"),
        metadata=dict(options.get("metadata", {})),
        request_id=options.get("request_id", ""),
    )
    if parameters := options.get("parameters"):
        request.parameters.update(dict(parameters))
    return request


def _call_metadata(
    traceparent: str | None,
    tracestate: str | None,
    request_id: str | None,
    headers: Sequence[tuple[str, str]],
) -> list[tuple[str, str]]:
    metadata: list[tuple[str, str]] = []
    if traceparent:
        if parse_traceparent(traceparent) is None:
            raise ValueError(f"not a valid traceparent: {traceparent!r}")
        metadata.append(("traceparent", traceparent))
        if tracestate:
            metadata.append(("tracestate", tracestate))
    if request_id:
        metadata.append(("x-request-id", request_id))
    return metadata + [(key.lower(), value) for key, value in headers]


def _trace_headers(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in metadata or ():
        if key in _HEADERS and isinstance(value, str):
            found.setdefault(key, value)
    return found


def _serving_status(reply: health_pb2.HealthCheckResponse) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


class _Base:
    """What both clients share: defaults and how a call's request and metadata are built."""

    def __init__(self, timeout: float, token: str | None = None) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive: every call has a deadline")
        self.timeout = timeout
        # Sent as gRPC metadata on every call (also over plaintext channels, e.g. a Unix socket).
        self._auth: list[tuple[str, str]] = [("authorization", f"Bearer {token}")] if token else []

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}(timeout={self.timeout}, token={'set' if self._auth else 'none'})"

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def _build(
        self, query: str, documents: Sequence[DocumentLike], options: RerankOptions
    ) -> tuple[pb.RerankRequest, list[tuple[str, str]]]:
        request = _request(query, documents, options)
        metadata = self._auth + _call_metadata(
            options.get("traceparent"),
            options.get("tracestate"),
            options.get("request_id"),
            options.get("headers", ()),
        )
        return request, metadata


class RerankClient(_Base):
    """Blocking client. `target` is "host:port" (or any gRPC target such as "unix:/path").

    Keyword arguments of `rerank` and `rerank_stream`: `model`, `top_n` (0: all), `return_documents`,
    `rank_fields`, `truncation`, `max_tokens_per_doc`, `parameters` (JSON-able provider options),
    `trace` (a `TraceContext` message), `traceparent`/`tracestate` (W3C metadata), `request_id`,
    `metadata` (RerankRequest.metadata), `headers` (extra gRPC metadata) and `timeout` (seconds).
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        retries: bool = True,
        options: Sequence[tuple[str, Any]] = (),
        channel: grpc.Channel | None = None,
    ) -> None:
        super().__init__(timeout, token)
        opts = channel_options(options, retries=retries)
        if channel is not None:  # a channel of the caller's own (tests: grpc_testing's scripted one)
            self.channel = channel
        elif credentials:
            self.channel = grpc.secure_channel(target, credentials, options=opts)
        else:
            self.channel = grpc.insecure_channel(target, options=opts)
        self._stub = rerank_pb2_grpc.RerankServiceStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> RerankClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def rerank(
        self,
        query: str,
        documents: Sequence[DocumentLike],
        *,
        timeout: float | None = None,
        **options: Unpack[RerankOptions],
    ) -> RerankReply:
        """Rank `documents` (strings or `Document` messages) by relevance to `query`."""
        request, metadata = self._build(query, documents, options)
        response, call = self._stub.Rerank.with_call(
            request, timeout=self._timeout(timeout), metadata=metadata
        )
        return RerankReply(response, _trace_headers((*call.initial_metadata(), *call.trailing_metadata())))

    def rerank_stream(
        self,
        query: str,
        documents: Sequence[DocumentLike],
        *,
        progressive: bool = False,
        results_per_message: int = 0,
        timeout: float | None = None,
        **options: Unpack[RerankOptions],
    ) -> Iterator[pb.RerankStreamResponse]:
        """RerankStream: the header, result slices and summary as they arrive (see `collect_stream`)."""
        request, metadata = self._build(query, documents, options)
        stream_request = pb.RerankStreamRequest(
            request=request, progressive=progressive, results_per_message=results_per_message
        )
        call = self._stub.RerankStream(stream_request, timeout=self._timeout(timeout), metadata=metadata)
        try:
            yield from call
        finally:
            call.cancel()  # a no-op once the stream has ended; stops it if the caller stopped early

    def rerank_stream_collect(
        self,
        query: str,
        documents: Sequence[DocumentLike],
        *,
        results_per_message: int = 0,
        timeout: float | None = None,
        **options: Unpack[RerankOptions],
    ) -> StreamReply:
        """`rerank_stream` folded into one `StreamReply`."""
        stream = self.rerank_stream(
            query, documents, results_per_message=results_per_message, timeout=timeout, **options
        )
        return collect_stream(stream)

    def list_models(self, *, timeout: float | None = None) -> pb.ListModelsResponse:
        return self._stub.ListModels(
            pb.ListModelsRequest(), timeout=self._timeout(timeout), metadata=self._auth
        )

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """The health status name of `service` ("" is the whole server): "SERVING", "NOT_SERVING", ..."""
        reply = self._health.Check(
            health_pb2.HealthCheckRequest(service=service),
            timeout=self._timeout(timeout),
            metadata=self._auth,
        )
        return _serving_status(reply)


class AsyncRerankClient(_Base):
    """asyncio client (grpc.aio) with the same calls as `RerankClient`; create it inside a running loop.

    `timeout` is the call's gRPC deadline, which the server sees and honours (`asyncio.timeout`
    would only stop the waiting here).
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        retries: bool = True,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(timeout, token)
        opts = channel_options(options, retries=retries)
        self.channel = (
            grpc.aio.secure_channel(target, credentials, options=opts)
            if credentials
            else grpc.aio.insecure_channel(target, options=opts)
        )
        self._stub = rerank_pb2_grpc.RerankServiceStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    async def __aenter__(self) -> AsyncRerankClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close(None)

    async def rerank(
        self,
        query: str,
        documents: Sequence[DocumentLike],
        *,
        timeout: float | None = None,
        **options: Unpack[RerankOptions],
    ) -> RerankReply:
        """Rank `documents` (strings or `Document` messages) by relevance to `query`."""
        request, metadata = self._build(query, documents, options)
        call = self._stub.Rerank(request, timeout=self._timeout(timeout), metadata=metadata)
        response = await call
        initial, trailing = await call.initial_metadata(), await call.trailing_metadata()
        return RerankReply(response, _trace_headers((*(initial or ()), *(trailing or ()))))

    async def rerank_stream(
        self,
        query: str,
        documents: Sequence[DocumentLike],
        *,
        progressive: bool = False,
        results_per_message: int = 0,
        timeout: float | None = None,
        **options: Unpack[RerankOptions],
    ) -> AsyncIterator[pb.RerankStreamResponse]:
        """RerankStream: the header, result slices and summary as they arrive."""
        request, metadata = self._build(query, documents, options)
        stream_request = pb.RerankStreamRequest(
            request=request, progressive=progressive, results_per_message=results_per_message
        )
        call = self._stub.RerankStream(stream_request, timeout=self._timeout(timeout), metadata=metadata)
        try:
            async for message in call:
                yield message
        finally:
            call.cancel()

    async def rerank_stream_collect(
        self,
        query: str,
        documents: Sequence[DocumentLike],
        *,
        results_per_message: int = 0,
        timeout: float | None = None,
        **options: Unpack[RerankOptions],
    ) -> StreamReply:
        """`rerank_stream` folded into one `StreamReply`."""
        stream = self.rerank_stream(
            query, documents, results_per_message=results_per_message, timeout=timeout, **options
        )
        return collect_stream([message async for message in stream])

    async def list_models(
        self,
        *,
        timeout: float | None = None,
    ) -> pb.ListModelsResponse:
        return await self._stub.ListModels(
            pb.ListModelsRequest(), timeout=self._timeout(timeout), metadata=self._auth
        )

    async def health(
        self,
        service: str = "",
        *,
        timeout: float | None = None,
    ) -> str:
        """The health status name of `service` ("" is the whole server): "SERVING", "NOT_SERVING", ..."""
        reply = await self._health.Check(
            health_pb2.HealthCheckRequest(service=service),
            timeout=self._timeout(timeout),
            metadata=self._auth,
        )
        return _serving_status(reply)
