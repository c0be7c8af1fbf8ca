"""httpx's transport API over aiohttp's client: the default outbound path of `HttpClient`.

Why: as a client on one core, httpx's own transport (httpcore) tops out near 350 calls/s against
an instant server and aiohttp near 4,000-5,000; rerankd keeps httpx's Request/Response/transport
API and swaps only what moves the bytes (bench/results/gateway.md has the numbers). It is not
the httpx-aiohttp package because that one re-quotes URLs (a SigV4-signed path such as Bedrock's
`/model/cohere.rerank-v3-5%3A0/invoke` then no longer matches its signature), reports every lost
connection as a ConnectTimeout, and streams bodies rerankd always reads whole.

What it does: one aiohttp session (opened on first use, on the running loop) with a bounded pool
of keep-alive connections; the request's URL and headers go out exactly as httpx built them, no
cookies are kept, bodies are read whole and decoded by httpx (Content-Encoding) as with its own
transport. aiohttp's failures come back as httpx's exceptions (timeouts as TimeoutException,
the rest as TransportError), the original as `__cause__`. Cancellation closes the connection.
"""

from __future__ import annotations

import aiohttp
import httpx
import yarl

_EXTENSIONS = {"http_version": b"HTTP/1.1"}


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx.AsyncBaseTransport that sends with aiohttp."""

    def __init__(self, max_connections: int = 512, keepalive_s: float = 5.0) -> None:
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=self.keepalive_s)
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # a gateway must not carry cookies between callers
            auto_decompress=False,  # httpx decodes, as with its own transport
            skip_auto_headers=("Content-Type",),  # no invented content type on bodies without one
            trust_env=False,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None or session.closed:
            session = self._session = self._open()
        timeout = request.extensions.get("timeout", {})
        try:
            async with session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
                data=request.content or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            ) as reply:
                body = await reply.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _httpx_error(exc, request) from exc
        return httpx.Response(
            reply.status,
            headers=reply.raw_headers,
            content=body,
            request=request,
            extensions={**_EXTENSIONS, "reason_phrase": (reply.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """httpx's exception for an aiohttp failure: timeouts stay timeouts, the rest transport errors."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(exc, TimeoutError):  # aiohttp's socket and total timeouts are TimeoutErrors too
        return httpx.ReadTimeout(text, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(text, request=request)
    return httpx.NetworkError(text, request=request)
