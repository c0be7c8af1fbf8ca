"""Wiring and lifecycle: build providers and router from settings, serve gRPC (+ health,
reflection) and the HTTP/JSON API (its own port, same event loop), and drain on SIGTERM/SIGINT:
health NOT_SERVING, stop accepting, let in-flight calls finish within the grace period, close
providers, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf.internal import api_implementation
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rerankd import metrics, tls, tracing
from rerankd.api import reflection
from rerankd.api.grpc_api import RerankServicer
from rerankd.api.grpc_guard import GuardInterceptor
from rerankd.api.health import HealthServicer
from rerankd.api.http.headers import HeaderLimits
from rerankd.api.http_api import TEI_PORT, HttpServer, create_app
from rerankd.api.pipeline import Pipeline
from rerankd.auth import Authenticator, http_authorizer
from rerankd.config import LOCAL_PROVIDER, BreakerConfig, ProviderConfig, Settings
from rerankd.local.provider import preflight
from rerankd.providers.base import Provider
from rerankd.providers.http import HttpClient
from rerankd.providers.registry import ProviderContext, create_provider
from rerankd.ratelimit import RateLimiter
from rerankd.routing import Router
from rerankd.v1 import rerank_pb2, rerank_pb2_grpc
from rerankd.validation import Limits, receive_limit

_LOG = logging.getLogger("rerankd.server")
SERVICE_NAME = rerank_pb2.DESCRIPTOR.services_by_name["RerankService"].full_name
# Health service names: "" and the RerankService follow readiness; "liveness" is SERVING while the
# process runs (never tied to providers, so a vendor outage does not restart pods).
READY_SERVICES = ("", SERVICE_NAME, "readiness")
LIVENESS = "liveness"


@dataclass
class App:
    """A built (not yet started) server and what it owns."""

    settings: Settings
    server: grpc.aio.Server
    health: HealthServicer
    router: Router
    providers: dict[str, Provider]
    http: HttpClient
    addresses: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    http_server: HttpServer | None = None  # the HTTP/JSON API; None when http_enabled is off
    http_address: str = ""  # host:port it listens on, once started
    http_port: int = 0  # its bound port, once started (0: not serving HTTP)
    tei_server: HttpServer | None = None  # TEI's own paths on tei_port; None when tei_port is unset
    tei_address: str = ""  # host:port it listens on, once started
    metrics_port: int = 0  # the bound /metrics port, once started (0: metrics off)
    _stop_metrics: Callable[[], None] | None = None

    async def start(self) -> None:
        """Bind, start serving (health NOT_SERVING), load providers, then report SERVING."""
        # Local models' files first (a hub model is fetched and verified): a missing one binds nothing.
        await asyncio.get_running_loop().run_in_executor(None, preflight, self.providers)
        # TLS on TCP listeners (gRPC and HTTP) when configured, following the files as they change.
        certificates = tls.ServerCertificates.from_settings(self.settings)
        credentials = certificates.grpc_credentials() if certificates is not None else None
        for address in self.settings.listen_addresses():
            try:
                if credentials is not None and not address.startswith("unix"):
                    port = self.server.add_secure_port(address, credentials)
                else:
                    port = self.server.add_insecure_port(address)
            except RuntimeError:  # grpcio raises where it once returned 0
                port = 0
            if port == 0 and not address.startswith("unix:"):
                raise OSError(f"gRPC: could not bind {address} (in use, or not an address of this host)")
            self.ports.append(port)
            self.addresses.append(
                address if address.startswith("unix:") else address.rsplit(":", 1)[0] + f":{port}"
            )
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        for name in READY_SERVICES:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        ssl_context = certificates.ssl_context() if certificates is not None else None
        for http_server in self._http_servers():  # bound now, served once providers are loaded
            http_server.bind()
            http_server.ssl_context = ssl_context
        if self.http_server is not None:
            self.http_port, self.http_address = self.http_server.port, self.http_server.address
        if self.tei_server is not None:
            self.tei_address = self.tei_server.address
        await self.server.start()
        for address in self.addresses:
            if address.startswith("unix:"):
                _chmod_socket(address, int(self.settings.unix_socket_mode, 8))
        _LOG.info("listening on %s", ", ".join(self.addresses))
        if self.settings.metrics_enabled:
            host = self.settings.metrics_host or self.settings.host
            try:
                self.metrics_port, self._stop_metrics = metrics.serve_metrics(
                    host, self.settings.metrics_port
                )
            except OSError as exc:
                raise OSError(
                    f"metrics: could not bind {host}:{self.settings.metrics_port} ({exc.strerror or exc};"
                    " RERANKD_METRICS_PORT, or RERANKD_METRICS_ENABLED=false)"
                ) from None
            _LOG.info("metrics on http://%s:%d/metrics", host, self.metrics_port)
        for provider in self.providers.values():
            await provider.start()
        scheme = "https" if certificates else "http"
        if self.http_server is not None:
            await self.http_server.start(self.settings.grace_period_s)
            _LOG.info("HTTP API on %s://%s", scheme, self.http_address)
        if self.tei_server is not None:
            await self.tei_server.start(self.settings.grace_period_s)
            _LOG.info("TEI API on %s://%s (TEI's own paths)", scheme, self.tei_address)
        for name in READY_SERVICES:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        _LOG.info("serving")

    async def drain(self, grace: float | None = None) -> None:
        """NOT_SERVING first, then stop accepting and finish in-flight calls within `grace`."""
        grace = self.settings.grace_period_s if grace is None else grace
        _LOG.info("draining (grace %.1fs)", grace)
        await self.health.end_watches()  # NOT_SERVING, and open Watch streams end once they saw it
        stopping = [self.server.stop(grace), *(http.stop(grace) for http in self._http_servers())]
        await asyncio.gather(*stopping)
        for provider in self.providers.values():
            with contextlib.suppress(Exception):
                await provider.aclose()
        await self.http.aclose()
        if self._stop_metrics is not None:
            self._stop_metrics()
        _LOG.info("stopped")

    def _http_servers(self) -> list[HttpServer]:
        return [server for server in (self.http_server, self.tei_server) if server is not None]


def build(settings: Settings) -> App:
    """Providers, router and a grpc.aio server, from settings. Nothing is bound or loaded yet."""
    if api_implementation.Type() != "upb":
        _LOG.warning(
            "protobuf uses the slow %r backend; install protobuf with upb", api_implementation.Type()
        )
    http = HttpClient()
    ctx = ProviderContext(settings=settings, http=http)
    configs = dict(settings.providers)
    if settings.local_enabled and LOCAL_PROVIDER not in configs:
        # No breaker on the default embedded model: its failures under load are queueing (busy, not
        # broken), and opening it would refuse every call to the only target of `default`.
        configs[LOCAL_PROVIDER] = ProviderConfig(kind="local", breaker=BreakerConfig(enabled=False))
    providers = {name: create_provider(name, config, ctx) for name, config in configs.items()}
    router = Router.from_config(providers, settings.routes, provider_configs=configs, settings=settings)
    router.events.subscribe(metrics.on_resilience_event)
    metrics.know_models(entry.name for entry in router.entries())
    authenticator = Authenticator.from_settings(settings)  # reads the token file: bad = no start
    limiter = RateLimiter.from_settings(settings)
    tls.warn_if_exposed(settings, authenticator.enabled)
    receive = receive_limit(Limits.from_settings(settings), settings.max_receive_message_bytes)
    server = grpc.aio.server(
        interceptors=[GuardInterceptor(authenticator, limiter)],
        options=[
            ("grpc.max_receive_message_length", receive),
            ("grpc.max_send_message_length", settings.max_send_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            *_connection_age_options(settings),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    rerank_pb2_grpc.add_RerankServiceServicer_to_server(RerankServicer(router, settings), server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable(server, (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name))
    http_server = tei_server = None
    if settings.http_enabled:
        pipeline = Pipeline(router, settings)
        authorize = http_authorizer(authenticator, limiter)
        host, limits = settings.http_host or settings.host, HeaderLimits.from_settings(settings)

        def ready() -> bool:
            return health_servicer.serving("readiness")

        http_app = create_app(pipeline, settings, authorize=authorize, ready=ready)
        http_server = HttpServer(http_app, host, settings.http_port, header_limits=limits)
        if settings.tei_port is not None:
            tei_app = create_app(pipeline, settings, authorize=authorize, ready=ready, layout=TEI_PORT)
            tei_server = HttpServer(tei_app, host, settings.tei_port, header_limits=limits)
    return App(
        settings,
        server,
        health_servicer,
        router,
        providers,
        http,
        http_server=http_server,
        tei_server=tei_server,
    )


def _connection_age_options(settings: Settings) -> list[tuple[str, int]]:
    if not settings.max_connection_age_s:
        return []
    return [
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(settings.grace_period_s * 1000)),
    ]


def _chmod_socket(address: str, mode: int) -> None:
    """Let the socket's group (e.g. the pod's fsGroup) connect, not only its owner."""
    path = address.removeprefix("unix:").removeprefix("//")
    if path and os.path.exists(path):
        os.chmod(path, mode)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain and return."""
    tracing.setup()  # OTLP export when OTEL_EXPORTER_OTLP_* is set; ids are propagated either way
    app = build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(app.start())
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting in done:
        starting.result()  # start-up errors surface here
        await stopping
    else:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    await app.drain()
    tracing.shutdown()
