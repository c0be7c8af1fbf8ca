"""Fixtures for the routing and resilience tests: generic fakes behind a live gRPC server.

`gateway(providers=..., routes=..., **settings)` starts the real server (no local model, so it
starts in milliseconds) with the test-only `generic` provider kind registered, and yields the app
and a stub. Tests inject faults into the fakes and assert on what callers and fakes saw.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rerankd.providers import registry
from rerankd.server import App
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.conftest import running_app, stub_for
from tests.fakes.generic import KIND, PROVIDER_PATH, GenericFake


@contextlib.contextmanager
def fakes(*specs: dict[str, Any]) -> Iterator[list[GenericFake]]:
    """Started GenericFakes, one per spec (GenericFake keyword arguments); stopped after."""
    started = [GenericFake(**spec).start() for spec in specs]
    try:
        yield started  # type: ignore[misc]
    finally:
        for fake in started:
            fake.stop()


@contextlib.asynccontextmanager
async def gateway(**settings: Any) -> AsyncIterator[tuple[App, pb_grpc.RerankServiceStub]]:
    """A live server from Settings(**settings) with the local model off, and a stub for it.

    The test-only `generic` provider kind is registered while the server is built.
    """
    registry.REGISTRY[KIND] = PROVIDER_PATH
    try:
        async with running_app(local_enabled=False, **settings) as app, stub_for(app) as stub:
            # Connect now, so that timings measured by tests do not include the channel's set-up.
            await stub.ListModels(pb.ListModelsRequest(), timeout=10)
            yield app, stub
    finally:
        registry.REGISTRY.pop(KIND, None)


def request(model: str, query: str, texts: Sequence[str], top_n: int = 0) -> pb.RerankRequest:
    return pb.RerankRequest(
        model=model, query=query, documents=[pb.Document(text=t) for t in texts], top_n=top_n
    )


def retry_delay_of(error: grpc.aio.AioRpcError) -> float | None:
    """The RetryInfo delay (seconds) in a gRPC error's rich status, or None."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToNanoseconds() / 1e9
    return None


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason in a gRPC error's rich status ("" when absent)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""
