"""httpx's transport API over aiohttp's client: the default outbound path of `HttpClient`.

Why: as a client on one core, httpx's own transport (httpcore) tops out near 350 calls/s against
an instant server and aiohttp near 4,000-5,000; rerankd keeps httpx's Request/Response/transport
API and swaps only what moves the bytes (bench/results/gateway.md has the numbers). It is not
the httpx-aiohttp package because that one re-quotes URLs (a SigV4-signed path such as Bedrock's
`/model/cohere.rerank-v3-5%3A0/invoke` then no longer matches its signature), reports every lost
connection as a ConnectTimeout, and streams bodies rerankd always reads whole.

`exchange()` is the same path without httpx's objects, for HttpClient's default route.

What it does: one aiohttp session (opened on first use, on the running loop) with a bounded pool
of keep-alive connections; the request's URL and headers go out exactly as httpx built them, no
cookies are kept, bodies are read whole and decoded by httpx (Content-Encoding) as with its own
transport. aiohttp's failures come back as httpx's exceptions (timeouts as TimeoutException,
the rest as TransportError), the original as `__cause__`. Cancellation closes the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import aiohttp
import httpx
import yarl

_EXTENSIONS = {"http_version": b"HTTP/1.1"}
_MAX_URLS = 1024


class Timeouts(NamedTuple):
    """Seconds for: getting a pooled connection, connecting, and each read."""

    pool: float | None
    connect: float | None
    read: float | None


class RawReply(NamedTuple):
    """An answer as it came off the wire: status, raw header pairs, body (still content-encoded)."""

    status: int
    reason: str
    raw_headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx.AsyncBaseTransport that sends with aiohttp."""

    def __init__(self, max_connections: int = 512, keepalive_s: float = 5.0) -> None:
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}  # parsed once: providers call the same few URLs

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=self.keepalive_s)
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # a gateway must not carry cookies between callers
            auto_decompress=False,  # httpx decodes, as with its own transport
            skip_auto_headers=("Content-Type",),  # no invented content type on bodies without one
            trust_env=False,
        )

    def _url(self, text: str) -> yarl.URL:
        url = self._urls.get(text)
        if url is None:
            if len(self._urls) >= _MAX_URLS:
                self._urls.clear()
            url = self._urls[text] = yarl.URL(text, encoded=True)  # exactly as given: no re-quoting
        return url

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | list[tuple[str, str]],
        body: bytes,
        timeouts: Timeouts,
    ) -> RawReply:
        """One request, the answer read whole. aiohttp's own exceptions propagate (ClientError,
        TimeoutError); `HttpClient` calls this directly, skipping httpx's Request and Response
        (about a tenth of a gateway call's CPU), and `handle_async_request` wraps it for httpx.
        """
        session = self._session
        if session is None or session.closed:
            session = self._session = self._open()
        async with session.request(
            method,
            self._url(url),
            headers=headers,
            data=body or None,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=timeouts.pool, sock_connect=timeouts.connect, sock_read=timeouts.read
            ),
        ) as reply:
            return RawReply(reply.status, reply.reason or "", reply.raw_headers, await reply.read())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        try:
            reply = await self.exchange(
                request.method,
                str(request.url),
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
                request.content,
                Timeouts(timeout.get("pool"), timeout.get("connect"), timeout.get("read")),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _httpx_error(exc, request) from exc
        return httpx.Response(
            reply.status,
            headers=reply.raw_headers,
            content=reply.body,
            request=request,
            extensions={**_EXTENSIONS, "reason_phrase": reply.reason.encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def error_class(exc: BaseException) -> type[httpx.TransportError]:
    """httpx's exception class for an aiohttp failure: timeouts stay timeouts, the rest transport
    errors (HttpClient names the class in its messages either way)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout
    if isinstance(exc, TimeoutError):  # aiohttp's socket and total timeouts are TimeoutErrors too
        return httpx.ReadTimeout
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError
    return httpx.NetworkError


def _httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    return error_class(exc)(f"{type(exc).__name__}: {exc}", request=request)
