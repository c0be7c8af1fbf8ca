"""Shared fixtures: an in-process grpc.aio server on a loopback port, with the real local model."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from rerankd import tracing
from rerankd.config import Settings
from rerankd.server import App, build
from rerankd.v1 import rerank_pb2_grpc as pb_grpc


@contextlib.asynccontextmanager
async def running_app(**overrides: Any) -> AsyncIterator[App]:
    """A started server (gRPC and HTTP on port 0 of 127.0.0.1) from Settings(**overrides); drained after.

    The HTTP API's bound port is `app.http_port` (0 when http_enabled=False).
    """
    settings = Settings(
        **{
            "host": "127.0.0.1",
            "port": 0,
            "http_port": 0,
            "metrics_enabled": False,
            "grace_period_s": 1.0,
            **overrides,
        }
    )
    app = build(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.drain(0.5)


@contextlib.asynccontextmanager
async def stub_for(app: App) -> AsyncIterator[pb_grpc.RerankServiceStub]:
    async with grpc.aio.insecure_channel(app.addresses[0]) as channel:
        yield pb_grpc.RerankServiceStub(channel)


@pytest.fixture(scope="session")
async def local_app() -> AsyncIterator[App]:
    """One server with the embedded model, shared by the tests that need no special config."""
    async with running_app() as app:
        yield app


@pytest.fixture
async def stub(local_app: App) -> AsyncIterator[pb_grpc.RerankServiceStub]:
    async with stub_for(local_app) as client:
        yield client


# The standard OpenTelemetry variables rerankd reads (tracing.py); tests start without them.
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No OTEL_* variable from the outside; rerankd's tracer reset to ids only afterwards."""
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    tracing.setup()
