"""The gRPC server interceptor in front of every method: safe decoding, authentication, rate limits.

For each call, in order:

1. Decoding. The method is re-registered without its deserializer and the request bytes are
   parsed here, so bytes that are not a valid message are refused with INVALID_ARGUMENT (the
   library would answer UNKNOWN and echo the parser's exception). A bad message inside a client
   stream (RerankBatch) ends the stream: answers already due are sent, then INVALID_ARGUMENT.
2. Authentication (`rerankd.auth`): metadata `authorization: Bearer <token>` or a verified client
   certificate; UNAUTHENTICATED otherwise. The health service is exempt: probes carry no
   credentials and learn nothing but SERVING / NOT_SERVING.
3. Rate limits (`rerankd.ratelimit`): a unary or server-streaming call takes one token from its
   caller's bucket or is refused with RESOURCE_EXHAUSTED + RetryInfo; each message of a client
   stream waits for a token instead (the stream is paced, not broken).
4. The caller is set in `auth.CALLER` for the handler: the servicer puts it in the call record,
   and log lines name it. RerankService's rerank calls are counted per caller by their call record
   (api/call.py); the guard counts the other guarded methods (ListModels, reflection) itself.

An exception escaping a handler becomes INTERNAL with a fixed message (the library would send
UNKNOWN with the exception's text, which can carry anything), unless the call is already over.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from rerankd import errors, metrics
from rerankd.api.grpc_api import RECORDED_METHODS
from rerankd.auth import ANONYMOUS, CALLER, Authenticator, Caller, certificate_caller
from rerankd.ratelimit import RateLimiter

_LOG = logging.getLogger("rerankd.guard")
_ACCESS = logging.getLogger("rerankd.access")
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)
_Deserializer = Callable[[bytes], Any] | None


class GuardInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every method handler of the server (see the module docstring)."""

    def __init__(self, authenticator: Authenticator, limiter: RateLimiter | None = None) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: the library answers UNIMPLEMENTED
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            wrapped = _Guarded(self, handler, method, method.startswith(EXEMPT_PREFIXES)).handler()
            cached = self._wrapped[method] = (handler, wrapped)
        return cached[1]

    async def admit(self, context: grpc.aio.ServicerContext, method: str, *, charge: bool) -> Caller:
        """Authenticate the call (and take a rate token when `charge`), or abort it."""
        if not self.authenticator.enabled and (not charge or self.limiter is None):
            return self.authenticator.anonymous  # nothing to check: skip reading the metadata
        metadata = {
            key.lower(): value
            for key, value in (context.invocation_metadata() or ())
            if isinstance(value, str)
        }
        certificate = certificate_caller(context.auth_context()) if self.authenticator.mtls else None
        try:
            caller = self.authenticator.authenticate(metadata, certificate)
        except errors.Unauthenticated as exc:
            metrics.AUTH_REFUSALS.labels(reason=exc.reason).inc()
            await self._refuse(context, method, exc, "")
        if charge and self.limiter is not None:
            try:
                self.limiter.check(caller.name)
            except errors.ResourceExhausted as exc:
                await self._refuse(context, method, exc, caller.name)
        return caller

    @staticmethod
    async def _refuse(
        context: grpc.aio.ServicerContext, method: str, exc: errors.RerankError, caller: str
    ) -> NoReturn:
        _ACCESS.info(
            "refused",
            extra={"access": {"method": method.lstrip("/"), "status": exc.code.name, "caller": caller}},
        )
        await context.abort_with_status(errors.to_status(exc))
        raise AssertionError("unreachable: abort_with_status raises")


@dataclass(slots=True)
class _BadMessage:
    index: int | None = None


class _Guarded:
    """One method handler, re-registered without a deserializer and wrapped."""

    def __init__(
        self, guard: GuardInterceptor, handler: grpc.RpcMethodHandler, method: str, exempt: bool
    ) -> None:
        self.guard = guard
        self.inner = handler
        self.method = method
        self.label = method.lstrip("/")  # the method label of metrics and access lines
        self.exempt = exempt
        self.counted = not exempt and method not in RECORDED_METHODS  # else its call record counts
        self.deserializer: _Deserializer = handler.request_deserializer
        self.message_type = _type_name(self.deserializer)

    def handler(self) -> grpc.RpcMethodHandler:
        h = self.inner
        serializer = h.response_serializer
        if h.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary_unary, None, serializer)
        if h.unary_stream is not None:
            wrapped = (
                self._unary_stream_gen if inspect.isasyncgenfunction(h.unary_stream) else self._unary_stream
            )
            return grpc.unary_stream_rpc_method_handler(wrapped, None, serializer)
        if h.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._stream_unary, None, serializer)
        streaming = (
            self._stream_stream_gen if inspect.isasyncgenfunction(h.stream_stream) else self._stream_stream
        )
        return grpc.stream_stream_rpc_method_handler(streaming, None, serializer)

    # -- admission, decoding, accounting ---------------------------------------------------------

    async def _begin(self, context: grpc.aio.ServicerContext, *, charge: bool) -> Caller | None:
        if self.exempt:
            return None
        caller = await self.guard.admit(context, self.method, charge=charge)
        CALLER.set(caller)  # this call's task has its own context: nothing leaks to other calls
        return caller

    async def _decode(self, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            return raw if self.deserializer is None else self.deserializer(raw)
        except Exception:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid {self.message_type} message"
            )
            raise AssertionError("unreachable: abort raises") from None

    async def _messages(
        self,
        raw_iterator: AsyncIterator[bytes],
        bad: _BadMessage,
        caller: Caller | None,
    ) -> AsyncIterator[Any]:
        index = 0
        async for raw in raw_iterator:
            try:
                message = raw if self.deserializer is None else self.deserializer(raw)
            except Exception:
                bad.index = index
                return
            if caller is not None and self.guard.limiter is not None:
                await self.guard.limiter.wait(caller.name)
            yield message
            index += 1

    async def _refuse_bad(self, bad: _BadMessage, context: grpc.aio.ServicerContext) -> None:
        if bad.index is not None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request message {bad.index}: not a valid {self.message_type} message",
            )

    def _finish(self, caller: Caller | None, context: grpc.aio.ServicerContext, status: str | None) -> None:
        if caller is None or not self.counted:
            return
        if status is None:
            code = context.code()
            status = code.name if isinstance(code, grpc.StatusCode) else "OK"
        metrics.child(metrics.CALLER_CALLS, caller.name, self.label, status).inc()

    async def _internal(self, context: grpc.aio.ServicerContext) -> None:
        _LOG.exception("unexpected error in %s", self.method)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    def _outcome(self, caller: Caller | None, context: grpc.aio.ServicerContext) -> _Outcome:
        """Count the call for its caller however it ends; an unexpected exception becomes INTERNAL."""
        return _Outcome(self, caller, context)

    # -- the four shapes ---------------------------------------------------------------------------

    async def _unary_unary(self, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        caller = await self._begin(context, charge=True)
        request = await self._decode(raw, context)
        async with self._outcome(caller, context):
            return await self.inner.unary_unary(request, context)

    async def _unary_stream(self, raw: bytes, context: grpc.aio.ServicerContext) -> None:
        caller = await self._begin(context, charge=True)
        request = await self._decode(raw, context)
        async with self._outcome(caller, context):
            await self.inner.unary_stream(request, context)

    async def _unary_stream_gen(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        caller = await self._begin(context, charge=True)
        request = await self._decode(raw, context)
        async with self._outcome(caller, context):
            async for response in self.inner.unary_stream(request, context):
                yield response

    async def _stream_unary(
        self, raw_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> Any:
        caller = await self._begin(context, charge=False)
        bad = _BadMessage()
        async with self._outcome(caller, context):
            response = await self.inner.stream_unary(self._messages(raw_iterator, bad, caller), context)
            await self._refuse_bad(bad, context)
            return response

    async def _stream_stream(
        self, raw_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> None:
        caller = await self._begin(context, charge=False)
        bad = _BadMessage()
        async with self._outcome(caller, context):
            await self.inner.stream_stream(self._messages(raw_iterator, bad, caller), context)
            await self._refuse_bad(bad, context)

    async def _stream_stream_gen(
        self, raw_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        caller = await self._begin(context, charge=False)
        bad = _BadMessage()
        async with self._outcome(caller, context):
            async for response in self.inner.stream_stream(
                self._messages(raw_iterator, bad, caller), context
            ):
                yield response
            await self._refuse_bad(bad, context)


class _Outcome:
    """`async with guarded._outcome(caller, context):` (a class, not a generator: every call has one)."""

    __slots__ = ("caller", "context", "guarded")

    def __init__(self, guarded: _Guarded, caller: Caller | None, context: grpc.aio.ServicerContext) -> None:
        self.guarded = guarded
        self.caller = caller
        self.context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        status: str | None = "OK"
        if kind is None:
            pass
        elif issubclass(kind, grpc.aio.AbortError):
            status = None  # the handler chose the status: read it from the context
        elif issubclass(kind, asyncio.CancelledError | GeneratorExit):
            status = "CANCELLED"
        elif issubclass(kind, Exception):
            if self.context.done():  # over already (cancelled, deadline): nobody to tell, nothing to log
                self.guarded._finish(self.caller, self.context, "CANCELLED")
                raise asyncio.CancelledError from None
            self.guarded._finish(self.caller, self.context, "INTERNAL")
            await self.guarded._internal(self.context)  # logs it, aborts: INTERNAL replaces it
        self.guarded._finish(self.caller, self.context, status)
        return False


def _type_name(deserializer: _Deserializer) -> str:
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


__all__ = ["ANONYMOUS", "EXEMPT_PREFIXES", "GuardInterceptor"]
