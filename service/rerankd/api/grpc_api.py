"""The gRPC servicer: the front door of RerankService. Each method decodes its request into a
RerankQuery, runs it through the shared pipeline and encodes the answer, with one call record
(api/call.py) per call that ends exactly once.

How a call ends here:
- an answer: OK, its ids and what served it in trailing metadata;
- an error from the taxonomy: its status (with google.rpc details and the ids in trailing
  metadata) while the caller is still there to read it;
- the caller leaving or the deadline passing: CANCELLED or DEADLINE_EXCEEDED, counted as such and
  never reported as an error. A call that is already over is not aborted again: the handler ends
  with CancelledError, which gRPC takes quietly;
- anything unexpected: logged once, INTERNAL with a fixed message.

Streams are written with `context.write` (not async generators), so a write the transport refuses
(the caller has gone) is an ending this module sees, not an error gRPC logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import NoReturn

import grpc

from rerankd import auth, authz, errors, tracing
from rerankd.api import convert, pipeline
from rerankd.api.call import OK, Call
from rerankd.config import Settings
from rerankd.domain import Ranked, Scored, TraceContext
from rerankd.routing import PartialSink, Router
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

_LOG = logging.getLogger("rerankd.api")
_STREAM_MESSAGE_BYTES = 256 * 1024  # results per stream message are packed up to about this size
_BATCH_PARALLELISM = 16
_DEADLINE_SLACK_S = 0.05  # a cancel this close to the deadline is the caller's deadline timer
SERVICE = pb.DESCRIPTOR.services_by_name["RerankService"].full_name
RERANK = f"{SERVICE}/Rerank"
RERANK_STREAM = f"{SERVICE}/RerankStream"
RERANK_BATCH = f"{SERVICE}/RerankBatch"
RECORDED_METHODS = frozenset({f"/{RERANK}", f"/{RERANK_STREAM}", f"/{RERANK_BATCH}"})
"""Methods whose calls have a call record (the guard counts the others per caller itself)."""


class _Gone(Exception):
    """The transport refused a send: the call is over (the caller left or the deadline passed)."""


class RerankServicer(pb_grpc.RerankServiceServicer):
    """RerankService over a Router."""

    def __init__(self, router: Router, settings: Settings) -> None:
        self.router = router
        self.settings = settings
        self.pipeline = pipeline.Pipeline(router, settings)

    def _open(self, method: str, request: pb.RerankRequest, metadata: dict[str, str]) -> Call:
        ids = pipeline.identify(request.request_id, _trace_from(request.trace), metadata)
        caller = auth.current_caller()  # set by the guard interceptor in this call's task
        return self.pipeline.open(
            method,
            ids,
            caller.name if caller is not None else "",
            model=request.model,
            documents=len(request.documents),
        )

    async def _serve(
        self,
        call: Call,
        request: pb.RerankRequest,
        metadata: dict[str, str],
        time_remaining: float | None,
        on_partial: PartialSink | None = None,
    ) -> Ranked:
        headers_metadata = tracing.header_metadata(metadata)  # x-metadata: malformed -> INVALID_ARGUMENT
        query = convert.to_query(
            request, trace=call.trace, request_id=call.request_id, metadata=headers_metadata
        )
        return await self.pipeline.rerank(call, query, time_remaining, on_partial=on_partial)

    async def Rerank(self, request: pb.RerankRequest, context: grpc.aio.ServicerContext) -> pb.RerankResponse:
        metadata = _metadata(context.invocation_metadata())
        call = self._open(RERANK, request, metadata)
        ids = _InitialIds(context, call)
        try:
            ranked = await self._serve(call, request, metadata, context.time_remaining())
            await ids.sent()
        except BaseException as exc:
            await _end(call, context, exc, ids)
        context.set_trailing_metadata(_trailing(call, ranked))
        call.finish(OK)
        return convert.response_message(ranked, request, request_id=call.request_id, trace=call.trace)

    async def RerankStream(self, request: pb.RerankStreamRequest, context: grpc.aio.ServicerContext) -> None:
        inner = request.request
        metadata = _metadata(context.invocation_metadata())
        call = self._open(RERANK_STREAM, inner, metadata)
        ids = _InitialIds(context, call)
        try:
            if request.progressive:
                await ids.sent()  # before the header, which goes out at once
                ranked = await self._progressive(call, inner, metadata, context)
            else:
                ranked = await self._serve(call, inner, metadata, context.time_remaining())
                await ids.sent()
                header = _stream_header(call, ranked.model, ranked.provider, len(ranked.results))
                await self._write(context, header)
            results = convert.result_messages(ranked.results, inner, inner.return_documents)
            for first_rank, chunk in _pack(results, request.results_per_message):
                message = pb.RerankStreamResults(results=chunk, first_rank=first_rank)
                await self._write(context, pb.RerankStreamResponse(results=message))
            summary = pb.RerankStreamSummary(
                usage=convert.usage_message(ranked.usage),
                attempts=convert.attempt_messages(ranked.attempts),
                model=ranked.model,
                provider=ranked.provider,
            )
            await self._write(context, pb.RerankStreamResponse(summary=summary))
        except BaseException as exc:
            await _end(call, context, exc, ids)
        context.set_trailing_metadata(_trailing(call, ranked))
        call.finish(OK)

    async def _progressive(
        self,
        call: Call,
        request: pb.RerankRequest,
        metadata: dict[str, str],
        context: grpc.aio.ServicerContext,
    ) -> Ranked:
        """Serve `request` in its own task, writing the header first and then each finished chunk's
        scores as they come (the router hands them to `queue.put_nowait`)."""
        queue: asyncio.Queue[list[Scored]] = asyncio.Queue()
        work = asyncio.create_task(
            self._serve(call, request, metadata, context.time_remaining(), on_partial=queue.put_nowait)
        )
        try:
            await self._write(
                context, _stream_header(call, request.model or "default", "", _expected(request))
            )
            while not work.done():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                await self._write(context, _partial(getter.result()))
            while not queue.empty():
                await self._write(context, _partial(queue.get_nowait()))
            return await work
        finally:
            _discard(work)

    async def RerankBatch(
        self, request_iterator: AsyncIterator[pb.RerankBatchRequest], context: grpc.aio.ServicerContext
    ) -> None:
        """Many requests on one stream, each its own call (record, access line, answer or error);
        answers are written as they finish, each call ending once its answer is written."""
        metadata = _metadata(context.invocation_metadata())
        remaining = context.time_remaining()
        started = asyncio.get_running_loop().time()
        out: asyncio.Queue[tuple[pb.RerankBatchResponse, Call, str] | None] = asyncio.Queue()
        gate = asyncio.Semaphore(_BATCH_PARALLELISM)
        unanswered = 0  # requests read whose answers are not written yet
        pending: dict[str, Call] = {}  # a caller's request id -> its call, until its answer is written

        async def one(request: pb.RerankRequest) -> None:
            call = self._open(RERANK_BATCH, request, metadata)
            try:
                if request.request_id in pending:  # its answer could not be told from the other's
                    raise errors.invalid(
                        "request.request_id",
                        f"{request.request_id!r} is already in flight on this stream; answers are"
                        " matched to requests by it: use one id per request",
                    )
                if request.request_id:
                    pending[request.request_id] = call
                elapsed = asyncio.get_running_loop().time() - started
                left = None if remaining is None else max(remaining - elapsed, 0.0)
                ranked = await self._serve(call, request, metadata, left)
                message = convert.response_message(
                    ranked, request, request_id=call.request_id, trace=call.trace
                )
                out.put_nowait(
                    (pb.RerankBatchResponse(request_id=call.request_id, response=message), call, OK)
                )
            except errors.RerankError as exc:
                call.failed(exc)
                out.put_nowait((_batch_error(call.request_id, exc), call, exc.code.name))
            except asyncio.CancelledError:
                call.finish(_gone_status(context))
                raise
            except Exception:
                _LOG.exception("unexpected error in %s (request id %s)", RERANK_BATCH, call.request_id)
                out.put_nowait(
                    (_batch_error(call.request_id, errors.internal_for(call.request_id)), call, "INTERNAL")
                )
            finally:
                gate.release()

        async def read() -> None:
            nonlocal unanswered
            async with asyncio.TaskGroup() as group:
                async for item in request_iterator:
                    await gate.acquire()
                    unanswered += 1
                    group.create_task(one(item.request))
            out.put_nowait(None)

        idle = self.settings.batch_idle_timeout_s
        reader = asyncio.create_task(read())
        try:
            while True:
                try:
                    item = await asyncio.wait_for(out.get(), idle)
                except TimeoutError:
                    if unanswered:
                        continue  # still working for the caller: not idle
                    raise errors.Unavailable(
                        f"no request for {idle:g} s: the stream was closed (batch_idle_timeout_s);"
                        " open a new one",
                        reason="IDLE_STREAM",
                    ) from None
                if item is None:
                    break
                message, call, status = item
                try:
                    await self._write(context, message)
                except errors.RerankError as exc:
                    call.finish(exc.code.name)
                    raise
                except BaseException:
                    call.finish(_gone_status(context))
                    raise
                unanswered -= 1
                if pending.get(message.request_id) is call:
                    del pending[message.request_id]
                call.finish(status)
            await reader
        except _Gone:
            raise asyncio.CancelledError from None  # the caller has gone: nothing left to tell it
        except errors.RerankError as exc:
            await _report(context, exc, ())
        finally:
            reader.cancel()
            while not out.empty():  # answers that never went out: their calls end with the stream
                if (item := out.get_nowait()) is not None:
                    item[1].finish(_gone_status(context))

    async def _write(self, context: grpc.aio.ServicerContext, message: object) -> None:
        """Write one stream message. A caller that takes nothing for stream_write_timeout_s (it
        stopped reading, so HTTP/2 flow control holds the message back) ends the stream with
        RESOURCE_EXHAUSTED: what the call holds (request, results) is freed, not kept for it."""
        timeout = self.settings.stream_write_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await _send(context.write(message))
        except TimeoutError:
            raise errors.ResourceExhausted(
                f"the caller read nothing for {timeout:g} s: the stream was ended (stream_write_timeout_s)",
                reason="SLOW_READER",
                retryable=False,
            ) from None

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return convert.model_messages(authz.visible(auth.current_caller(), self.router.entries()))


async def _send(operation: object) -> None:
    """Await a gRPC send (initial metadata, a message); a refusal by the transport means the call
    is over, raised as _Gone. AbortError and cancellation pass through."""
    try:
        await operation  # type: ignore[misc]
    except (grpc.aio.AbortError, asyncio.CancelledError):
        raise
    except Exception as exc:
        raise _Gone(type(exc).__name__) from None


class _InitialIds:
    """The call's ids going out as initial metadata while its work runs: the send is started, not
    awaited, so the work begins at once (at concurrency 1 this saves a loop turn per call, ~15% of
    the added latency: bench/results/ab.md). gRPC needs it done before a message or the status."""

    __slots__ = ("_future",)

    def __init__(self, context: grpc.aio.ServicerContext, call: Call) -> None:
        self._future = asyncio.ensure_future(context.send_initial_metadata(call.id_metadata()))

    async def sent(self) -> None:
        """Wait for the send; _Gone if the transport refused it (the call is over)."""
        await _send(self._future)

    async def settled(self) -> bool:
        """Wait for the send however it ends (before an error status); whether it went out."""
        if not self._future.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._future)
        return self._future.done() and not self._future.cancelled() and self._future.exception() is None

    def drop(self) -> None:
        """The call ended without an answer: stop waiting for the send, quietly."""
        if not self._future.done():
            self._future.cancel()
        elif not self._future.cancelled():
            self._future.exception()  # retrieved: no "exception was never retrieved" warning


async def _end(
    call: Call, context: grpc.aio.ServicerContext, exc: BaseException, ids: _InitialIds
) -> NoReturn:
    """End `call` after `exc` and tell the caller, if it is still there. Always raises."""
    error: errors.RerankError | None = None
    if isinstance(exc, errors.RerankError):
        error = exc
        call.failed(exc)
        status = exc.code.name
    elif isinstance(exc, asyncio.CancelledError | _Gone) or context.done():
        status = _gone_status(context)
    elif isinstance(exc, grpc.aio.AbortError):
        status = _status_name(context.code())  # aborted by a layer below with its own status
    else:
        _LOG.error("unexpected error in %s (request id %s)", call.method, call.request_id, exc_info=exc)
        error = errors.internal_for(call.request_id)
        status = "INTERNAL"
    call.finish(status)
    if isinstance(exc, asyncio.CancelledError | grpc.aio.AbortError):
        ids.drop()
        raise exc
    if error is None or context.done() or not await ids.settled():
        ids.drop()
        raise asyncio.CancelledError  # the call is over: gRPC ends a cancelled handler quietly
    await _report(context, error, _trailing(call), call.request_id)


async def _report(
    context: grpc.aio.ServicerContext,
    error: errors.RerankError,
    trailing: tuple[tuple[str, str], ...],
    request_id: str = "",
) -> NoReturn:
    """End the call with `error`'s status (details and `trailing` in the trailers) if the caller is
    still there. Raises AbortError, or CancelledError when the call was over already."""
    if not context.done():
        reported = errors.to_status(error, request_id)
        try:
            await context.abort(reported.code, reported.details, (*reported.trailing_metadata, *trailing))
        except grpc.aio.AbortError:
            raise
        except Exception:
            pass  # the call ended while the status was being sent: nobody is left to read it
    raise asyncio.CancelledError  # the call is over: gRPC ends a cancelled handler quietly


def _gone_status(context: grpc.aio.ServicerContext) -> str:
    """How a call that lost its caller ended: its deadline had passed (or was about to: a client's
    own deadline timer cancels the call a little before the server's copy of the deadline runs
    out, by the time its request took to arrive), or it was cancelled."""
    remaining = context.time_remaining()
    return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= _DEADLINE_SLACK_S else "CANCELLED"


def _status_name(code: object) -> str:
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _discard(task: asyncio.Task[Ranked]) -> None:
    """Cancel `task` if it still runs; otherwise mark its outcome as seen."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


def _partial(scores: list[Scored]) -> pb.RerankStreamResponse:
    best_first = sorted(scores, key=lambda s: (-s.score, s.index))
    results = [pb.RerankResult(index=s.index, relevance_score=s.score) for s in best_first]
    return pb.RerankStreamResponse(results=pb.RerankStreamResults(results=results, partial=True))


def _stream_header(call: Call, model: str, provider: str, total: int) -> pb.RerankStreamResponse:
    return pb.RerankStreamResponse(
        header=pb.RerankStreamHeader(
            id=call.request_id,
            model=model,
            provider=provider,
            trace=convert.trace_message(call.trace),
            total_results=total,
        )
    )


def _expected(request: pb.RerankRequest) -> int:
    count = len(request.documents)
    return min(request.top_n, count) if request.top_n else count


def _trailing(call: Call, ranked: Ranked | None = None) -> tuple[tuple[str, str], ...]:
    """Trailing metadata, on answers and errors alike: the ids; then, on an answer, what served it
    (x-provider, x-attempts, and x-cache "hit"/"miss" where the route caches answers); on an
    error, the provider it came from when known."""
    pairs: tuple[tuple[str, str], ...] = (
        ("x-request-id", call.request_id),
        ("x-trace-id", call.trace.trace_id),
    )
    if ranked is None:
        return (*pairs, ("x-provider", call.provider)) if call.provider else pairs
    pairs += (("x-provider", ranked.provider), ("x-attempts", str(len(ranked.attempts))))
    return (*pairs, ("x-cache", ranked.cache)) if ranked.cache else pairs


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


def _pack(
    results: Iterable[pb.RerankResult], per_message: int
) -> Iterable[tuple[int, list[pb.RerankResult]]]:
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
