"""The outbound transports under `HttpClient`: aiohttp's client (the default, the fast one) and any
other httpx transport, behind one `exchange` call.

httpx is the seam: its transport interface (`httpx.AsyncBaseTransport`) is what can stand in
(httpx.MockTransport in tests, httpx.AsyncHTTPTransport), and its exception classes are the one
vocabulary of transport failures (timeouts as TimeoutException, the rest TransportError), which
`HttpClient.send` maps to the taxonomy once. Under it runs exactly one fast transport:

Why aiohttp: as a client on one core, httpx's own transport (httpcore) tops out near 350 calls/s
against an instant server and aiohttp near 4,000-5,000 (bench/results/gateway.md). It is not the
httpx-aiohttp package because that one re-quotes URLs (a SigV4-signed path such as Bedrock's
`/model/cohere.rerank-v3-5%3A0/invoke` then no longer matches its signature), reports every lost
connection as a ConnectTimeout, and streams bodies rerankd always reads whole.

`AiohttpTransport.exchange` sends without building any httpx object: one aiohttp session (opened
on first use, on the running loop) with a bounded pool of keep-alive connections; the URL and
headers go out exactly as given, no cookies are kept, bodies are read whole and left encoded
(HttpClient decodes Content-Encoding once, whatever the transport). Cancellation closes the
connection. It is an httpx transport too (`handle_async_request`) for code that wants one.
`HttpxExchange` gives any other httpx transport the same `exchange`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Protocol

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


class Exchange(Protocol):
    """What HttpClient sends through: one request, the answer read whole (still encoded).

    Failures are raised as httpx.TransportError subclasses, the original as `__cause__`.
    """

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> RawReply: ...

    async def aclose(self) -> None: ...


class AiohttpTransport(httpx.AsyncBaseTransport):
    """aiohttp's client as an Exchange (and as an httpx.AsyncBaseTransport)."""

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
            auto_decompress=False,  # HttpClient decodes, once, for every transport
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
        session = self._session
        if session is None or session.closed:
            session = self._session = self._open()
        try:
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
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise error_class(exc)(f"{type(exc).__name__}: {exc}") from exc

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
        except httpx.TransportError as exc:
            exc.request = request
            raise
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


class HttpxExchange:
    """Any httpx transport as an Exchange: an httpx.Request in, the raw (undecoded) body out."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> RawReply:
        timeout = {
            "connect": timeouts.connect,
            "read": timeouts.read,
            "write": timeouts.read,
            "pool": timeouts.pool,
        }
        request = httpx.Request(method, url, headers=headers, content=body, extensions={"timeout": timeout})
        response = await self.transport.handle_async_request(request)
        stream = response.stream  # the bytes as sent (a transport never decodes them)
        try:
            raw = b"".join([part async for part in stream])  # type: ignore[union-attr]
        finally:
            await response.aclose()
        return RawReply(response.status_code, response.reason_phrase, tuple(response.headers.raw), raw)

    async def aclose(self) -> None:
        await self.transport.aclose()


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
