"""The gRPC servicer: validate, convert proto <-> domain, call the router; unary, stream, batch."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from rerankd import auth, authz, errors, tracing
from rerankd.api import convert, pipeline
from rerankd.config import Settings
from rerankd.domain import Ranked, Scored, TraceContext
from rerankd.router import PARTIAL_RESULTS, Router
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

_LOG = logging.getLogger("rerankd.api")
_STREAM_MESSAGE_BYTES = 256 * 1024  # results per stream message are packed up to about this size
_BATCH_PARALLELISM = 16


@dataclass(slots=True)
class _Served:
    ranked: Ranked
    request_id: str
    trace: TraceContext


class RerankServicer(pb_grpc.RerankServiceServicer):
    """RerankService over a Router."""

    def __init__(self, router: Router, settings: Settings) -> None:
        self.router = router
        self.settings = settings
        self.pipeline = pipeline.Pipeline(router, settings)

    async def _serve(
        self,
        request: pb.RerankRequest,
        metadata: Mapping[str, str],
        time_remaining: float | None,
        ids: tuple[str, TraceContext],
        method: str,
    ) -> _Served:
        request_id, trace = ids
        headers_metadata = tracing.header_metadata(metadata)  # x-metadata: malformed -> INVALID_ARGUMENT
        query = convert.to_query(request, trace=trace, request_id=request_id, metadata=headers_metadata)
        ranked = await self.pipeline.rerank(query, time_remaining, method=method)
        return _Served(ranked, request_id, trace)

    @staticmethod
    def _ids(request: pb.RerankRequest, metadata: Mapping[str, str]) -> tuple[str, TraceContext]:
        return pipeline.identify(request.request_id, _trace_from(request.trace), metadata)

    async def Rerank(self, request: pb.RerankRequest, context: grpc.aio.ServicerContext) -> pb.RerankResponse:
        metadata = _metadata(context.invocation_metadata())
        ids = self._ids(request, metadata)
        ids_sent = _send_ids(context, ids)
        started = time.perf_counter()
        served = await self._guard(
            context,
            "Rerank",
            request,
            ids,
            started,
            self._serve(request, metadata, context.time_remaining(), ids, "Rerank"),
            ids_sent,
        )
        context.set_trailing_metadata(_trailing(served))
        self._access("Rerank", request, served.request_id, served.trace, started, "OK", served.ranked)
        return convert.response_message(
            served.ranked, request, request_id=served.request_id, trace=served.trace
        )

    async def RerankStream(
        self, request: pb.RerankStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RerankStreamResponse]:
        inner = request.request
        metadata = _metadata(context.invocation_metadata())
        ids = self._ids(inner, metadata)
        ids_sent = _send_ids(context, ids)
        started = time.perf_counter()
        work = self._serve(inner, metadata, context.time_remaining(), ids, "RerankStream")
        if request.progressive:
            progress = _Progress(work)
            try:
                await _settle(ids_sent, progress.task)  # the ids go out before any message
                yield _stream_header(ids[0], inner.model or "default", "", ids[1], _expected_results(inner))
                async for partial in progress.partials():
                    yield partial
                served = await self._guard(
                    context, "RerankStream", inner, ids, started, progress.task, ids_sent
                )
            finally:
                progress.task.cancel()
        else:
            served = await self._guard(context, "RerankStream", inner, ids, started, work, ids_sent)
            ranked = served.ranked
            yield _stream_header(
                served.request_id, ranked.model, ranked.provider, served.trace, len(ranked.results)
            )
        ranked = served.ranked
        results = convert.result_messages(ranked.results, inner, inner.return_documents)
        for first_rank, chunk in _pack(results, request.results_per_message):
            yield pb.RerankStreamResponse(
                results=pb.RerankStreamResults(results=chunk, first_rank=first_rank)
            )
        yield pb.RerankStreamResponse(
            summary=pb.RerankStreamSummary(
                usage=convert.usage_message(ranked.usage),
                attempts=convert.attempt_messages(ranked.attempts),
                model=ranked.model,
                provider=ranked.provider,
            )
        )
        context.set_trailing_metadata(_trailing(served))
        self._access("RerankStream", inner, served.request_id, served.trace, started, "OK", ranked)

    async def RerankBatch(
        self, request_iterator: AsyncIterator[pb.RerankBatchRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RerankBatchResponse]:
        metadata = _metadata(context.invocation_metadata())
        remaining = context.time_remaining()
        out: asyncio.Queue[pb.RerankBatchResponse | None] = asyncio.Queue()
        gate = asyncio.Semaphore(_BATCH_PARALLELISM)

        async def one(request: pb.RerankRequest) -> None:
            ids = self._ids(request, metadata)
            started = time.perf_counter()
            try:
                left = (
                    None if remaining is None else max(remaining - (time.monotonic() - stream_started), 0.0)
                )
                served = await self._serve(request, metadata, left, ids, "RerankBatch")
                message = convert.response_message(served.ranked, request, request_id=ids[0], trace=ids[1])
                await out.put(pb.RerankBatchResponse(request_id=ids[0], response=message))
                self._access("RerankBatch", request, ids[0], ids[1], started, "OK", served.ranked)
            except errors.RerankError as exc:
                await out.put(_batch_error(ids[0], exc))
                self._access("RerankBatch", request, ids[0], ids[1], started, exc.code.name, None)
            except Exception:
                _LOG.exception("unexpected error (request id %s)", ids[0])
                await out.put(_batch_error(ids[0], errors.internal_for(ids[0])))
            finally:
                gate.release()

        async def read() -> None:
            async with asyncio.TaskGroup() as group:
                async for item in request_iterator:
                    await gate.acquire()
                    group.create_task(one(item.request))
            await out.put(None)

        stream_started = time.monotonic()
        reader = asyncio.create_task(read())
        try:
            while (message := await out.get()) is not None:
                yield message
            await reader
        finally:
            reader.cancel()

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return convert.model_messages(authz.visible(auth.current_caller(), self.router.entries()))

    async def _guard(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        request: pb.RerankRequest,
        ids: tuple[str, TraceContext],
        started: float,
        work: object,
        ids_sent: asyncio.Future[None],
    ) -> _Served:
        """Await `work`; report taxonomy errors with their status and anything else as INTERNAL.
        Whatever happens, the initial metadata (`ids_sent`) has gone out before the answer does.
        """
        request_id, trace = ids
        try:
            served: _Served = await work  # type: ignore[misc]
        except errors.RerankError as exc:
            self._access(method, request, request_id, trace, started, exc.code.name, None)
            await _settle(ids_sent, None)
            await context.abort_with_status(errors.to_status(exc, request_id))
        except (asyncio.CancelledError, grpc.aio.AbortError):
            _abandon(ids_sent)
            self._access(method, request, request_id, trace, started, "CANCELLED", None)
            raise
        except Exception:
            _LOG.exception("unexpected error in %s (request id %s)", method, request_id)
            self._access(method, request, request_id, trace, started, "INTERNAL", None)
            await _settle(ids_sent, None)
            await context.abort_with_status(errors.to_status(errors.internal_for(request_id), request_id))
        else:
            await _settle(ids_sent, None)
            return served
        raise AssertionError("unreachable: abort_with_status raises")

    def _access(
        self,
        method: str,
        request: pb.RerankRequest,
        request_id: str,
        trace: TraceContext,
        started: float,
        status: str,
        ranked: Ranked | None,
    ) -> None:
        self.pipeline.log_access(
            method=method,
            status=status,
            request_id=request_id,
            trace_id=trace.trace_id,
            model=request.model,
            provider=ranked.provider if ranked else "",
            documents=len(request.documents),
            started=started,
        )


class _Progress:
    """A request running in its own task, publishing each finished chunk's scores to a queue."""

    def __init__(self, work: Coroutine[Any, Any, _Served]) -> None:
        self.queue: asyncio.Queue[list[Scored]] = asyncio.Queue()

        async def run() -> _Served:
            # Set in this task's own copy of the context: only this request's chunks publish here.
            PARTIAL_RESULTS.set(lambda _target, scores: self.queue.put_nowait(scores))
            return await work

        self.task: asyncio.Task[_Served] = asyncio.create_task(run())

    async def partials(self) -> AsyncIterator[pb.RerankStreamResponse]:
        """Partial-result messages until the request finishes (then those already published)."""
        while not self.task.done():
            getter = asyncio.ensure_future(self.queue.get())
            await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            yield _partial(getter.result())
        while not self.queue.empty():
            yield _partial(self.queue.get_nowait())


def _partial(scores: list[Scored]) -> pb.RerankStreamResponse:
    best_first = sorted(scores, key=lambda s: (-s.score, s.index))
    results = [pb.RerankResult(index=s.index, relevance_score=s.score) for s in best_first]
    return pb.RerankStreamResponse(results=pb.RerankStreamResults(results=results, partial=True))


def _stream_header(
    request_id: str, model: str, provider: str, trace: TraceContext, total: int
) -> pb.RerankStreamResponse:
    return pb.RerankStreamResponse(
        header=pb.RerankStreamHeader(
            id=request_id,
            model=model,
            provider=provider,
            trace=convert.trace_message(trace),
            total_results=total,
        )
    )


def _expected_results(request: pb.RerankRequest) -> int:
    count = len(request.documents)
    return min(request.top_n, count) if request.top_n else count


def _trace_from(message: pb.TraceContext) -> TraceContext:
    return TraceContext(
        trace_id=message.trace_id,
        span_id=message.span_id,
        parent_span_id=message.parent_span_id,
        span_name=message.span_name,
        tracestate=message.tracestate,
    )


def _metadata(pairs: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    return {key.lower(): value for key, value in (pairs or ()) if isinstance(value, str)}


def _id_metadata(request_id: str, trace: TraceContext) -> tuple[tuple[str, str], ...]:
    return (("x-request-id", request_id), ("x-trace-id", trace.trace_id), ("x-span-id", trace.span_id))


def _send_ids(context: grpc.aio.ServicerContext, ids: tuple[str, TraceContext]) -> asyncio.Future[None]:
    """Start sending the call's ids as initial metadata without waiting for it: the work begins at
    once and the send completes meanwhile (one wake-up less per call). Every path settles it before
    the call's first message or its status, which gRPC requires to come after it.
    """
    return asyncio.ensure_future(context.send_initial_metadata(_id_metadata(*ids)))


async def _settle(ids_sent: asyncio.Future[None], work: asyncio.Task[Any] | None) -> None:
    """Wait for the initial metadata to be sent. When it cannot be (the caller is gone), `work` is
    cancelled and the error propagates, as it did when the send came first."""
    try:
        await ids_sent
    except BaseException:
        if work is not None:
            work.cancel()
        raise


def _abandon(ids_sent: asyncio.Future[None]) -> None:
    """The call is over without an answer: stop waiting for its initial metadata, quietly."""
    if ids_sent.done():
        if not ids_sent.cancelled():
            ids_sent.exception()  # retrieved: no "exception was never retrieved" warning
    else:
        ids_sent.cancel()


def _trailing(served: _Served) -> tuple[tuple[str, str], ...]:
    pairs = (
        ("x-request-id", served.request_id),
        ("x-trace-id", served.trace.trace_id),
        ("x-provider", served.ranked.provider),
        ("x-attempts", str(len(served.ranked.attempts))),
    )
    # x-cache: "hit" (answered from the route's response cache, no provider call) or "miss".
    return (*pairs, ("x-cache", served.ranked.cache)) if served.ranked.cache else pairs


def _pack(results: list[pb.RerankResult], per_message: int) -> Iterable[tuple[int, list[pb.RerankResult]]]:
    """Slices of `results` holding at most `per_message` results and about 256 KiB each."""
    chunk: list[pb.RerankResult] = []
    size = 0
    first = 0
    for rank, result in enumerate(results):
        item = result.ByteSize() + 8
        if chunk and (size + item > _STREAM_MESSAGE_BYTES or (per_message and len(chunk) >= per_message)):
            yield first, chunk
            chunk, size, first = [], 0, rank
        chunk.append(result)
        size += item
    if chunk:
        yield first, chunk


def _batch_error(request_id: str, exc: errors.RerankError) -> pb.RerankBatchResponse:
    return pb.RerankBatchResponse(
        request_id=request_id,
        error=pb.RerankError(
            code=errors.code_number(exc.code),
            message=errors.scrub(exc.message),
            fields=[field for field, _ in exc.field_violations],
        ),
    )
