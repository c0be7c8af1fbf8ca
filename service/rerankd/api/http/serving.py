"""Serving the HTTP front door: `HttpServer` runs the ASGI app with uvicorn on rerankd's own event
loop, on its own port, leaving signal handling to rerankd; with `ssl_context` set (rerankd.tls),
over TLS. Its connections speak HTTP/1.1 through h11, with the header caps of api/http/headers.py
checked before h11 parses a request head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

import uvicorn
from starlette.applications import Starlette

from rerankd.api.http.headers import HeaderLimits, incomplete_head_limit, limited_protocol


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside rerankd's loop: the process's SIGTERM/SIGINT handling stays rerankd's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class HttpServer:
    """The HTTP front door on its own port, served by uvicorn on the running event loop."""

    def __init__(
        self, app: Starlette, host: str, port: int, *, header_limits: HeaderLimits | None = None
    ) -> None:
        self.app = app
        self.header_limits = header_limits or HeaderLimits()
        self.host = host
        self.requested_port = port
        self.port = 0
        self._socket: socket.socket | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.ssl_context: ssl.SSLContext | None = None  # set before start() to serve TLS

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def bind(self) -> int:
        """Bind the listening socket now (errors surface here); returns the bound port."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(
                f"HTTP: could not bind {self.host}:{self.requested_port} ({exc.strerror})"
            ) from None
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        return self.port

    async def start(self, grace: float) -> None:
        """Serve on the bound socket; returns once uvicorn accepts connections."""
        if self._socket is None:
            self.bind()
        # uvicorn's start/stop chatter ("Started server process", ...) would read as another process.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            http=limited_protocol(self.header_limits),
            h11_max_incomplete_event_size=incomplete_head_limit(self.header_limits),
            # typed int in uvicorn, used as asyncio.wait_for's timeout: fractions of a second work
            timeout_graceful_shutdown=max(grace, 0.1),  # type: ignore[arg-type]
        )
        config.load()
        config.ssl = self.ssl_context  # uvicorn passes it to loop.create_server as it is
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="rerankd-http")  # type: ignore[list-item]
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"HTTP server on {self.address} stopped during start-up")
            await asyncio.sleep(0.005)

    async def stop(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish within `grace`, then close."""
        server, task = self._server, self._task
        if server is None or task is None:
            if self._socket is not None:
                self._socket.close()
            return
        server.config.timeout_graceful_shutdown = max(grace, 0.1)  # type: ignore[assignment]  # as above
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), grace + 2.0)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            if self._socket is not None:
                self._socket.close()
