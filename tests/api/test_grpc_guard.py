"""The guard interceptor turns exceptions that escape a handler into INTERNAL, in every call shape."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from rerankd.api.grpc_guard import GuardInterceptor
from rerankd.auth import Authenticator


async def _boom(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise RuntimeError("a bug with a secret-looking detail sk-live-000000000000000")


async def _boom_after_one(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"first"
    raise RuntimeError("a bug mid-stream")


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    handlers = {
        "Boom": grpc.unary_unary_rpc_method_handler(_boom),
        "BoomStream": grpc.unary_stream_rpc_method_handler(_boom_after_one),
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
    }
    server = grpc.aio.server(interceptors=[GuardInterceptor(Authenticator(None, mtls=False))])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Guarded", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as open_channel:
            yield open_channel
    finally:
        await server.stop(None)


async def test_unary_exception_is_internal_without_details(channel: grpc.aio.Channel) -> None:
    assert await channel.unary_unary("/test.Guarded/Echo")(b"hi", timeout=5) == b"hi"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.Guarded/Boom")(b"x", timeout=5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error"


async def test_stream_exception_after_a_message_is_internal(channel: grpc.aio.Channel) -> None:
    call = channel.unary_stream("/test.Guarded/BoomStream")(b"x", timeout=5)
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in call:
            received.append(message)
    assert received == [b"first"]
    assert caught.value.code() == grpc.StatusCode.INTERNAL
