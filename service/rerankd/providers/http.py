"""The one shared outbound HTTP path (`HttpClient`, over an httpx-seamed transport) plus a base for
HTTP providers.

An HTTP provider is three pure pieces: `build_request` (ProviderCall -> HttpRequest),
`parse_response` (HTTP answer -> ProviderResult) and `error_message` (error body -> text); a JSON
provider gets all three from a declarative spec (providers/jsonspec.py). Transport failures and
HTTP statuses become taxonomy errors here, in `map_http_status` and `HttpClient.send`, so every
provider maps them the same way.
"""

from __future__ import annotations

import abc
import json
import math
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from rerankd import errors, tracing
from rerankd.config import ProviderConfig
from rerankd.providers.aiohttp_transport import AiohttpTransport, Exchange, HttpxExchange, Timeouts
from rerankd.providers.base import Provider, ProviderCall, ProviderResult

_USER_AGENT = "rerankd/0.1"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A fully built outbound request (body already encoded, so it can be signed)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class HttpReply:
    """What came back: status, headers (lower-case names) and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:  # what orjson refuses (NaN, huge integers, UTF-16) json may take
            try:
                return json.loads(self.body)
            except RecursionError:  # nested past orjson's 1,024 levels: no answer of ours is that deep
                raise ValueError("the answer nests JSON too deeply") from None


def encode_json(payload: Any) -> bytes:
    """Compact UTF-8 JSON; orjson (several times faster), the json module for what orjson refuses."""
    try:
        return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # integers past 64 bits, lone surrogates (which json then refuses too), ...
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Server-directed back-off from retry-after-ms, x-ms-retry-after-ms or Retry-After."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            try:
                return max(float(value) / 1000.0, 0.0)
            except ValueError:
                pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        import datetime as _dt

        when = parsedate_to_datetime(value)
        return max((when - _dt.datetime.now(_dt.UTC)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def map_http_status(
    provider: str, status: int, message: str, headers: Mapping[str, str]
) -> errors.RerankError:
    """One mapping of provider HTTP failures to the taxonomy, by who must act."""
    text = f"{provider}: {message or f'HTTP {status}'}"
    if status in (401, 403, 498):
        return errors.ProviderMisconfigured(
            f"{provider}: the provider refused rerankd's credentials (HTTP {status}): {message}",
            provider=provider,
        )
    if status == 429:
        return errors.ResourceExhausted(text, retry_after=retry_after_seconds(headers), provider=provider)
    if status in (408, 504):
        return errors.DeadlineExceeded(text, provider=provider)
    if status == 424:  # failed dependency: the provider's model/backend failed (TEI, Bedrock)
        return errors.Unavailable(text, provider=provider)
    if status == 404:
        return errors.InvalidArgument(text, provider=provider, reason="PROVIDER_NOT_FOUND")
    if 400 <= status < 500:
        return errors.InvalidArgument(text, provider=provider, reason="PROVIDER_INVALID_ARGUMENT")
    if status >= 500:
        return errors.Unavailable(text, retry_after=retry_after_seconds(headers), provider=provider)
    return errors.BadResponse(f"{provider}: unexpected HTTP {status}", provider=provider)


class HttpClient:
    """The process-wide outbound client. One connection pool for every provider, one send path.

    Requests go to an Exchange (providers/aiohttp_transport.py): by default aiohttp's client,
    straight, with no httpx.Request or Response built (about a tenth of a gateway call's CPU) and
    no httpx.AsyncClient (cookies, auth flows, redirects, hooks rerankd never uses: about 0.25 ms
    per call, bench/results/gateway.md). Any httpx transport can be passed instead
    (httpx.MockTransport, httpx.AsyncHTTPTransport); it gets httpx.Requests through HttpxExchange.
    Either way the answer is decoded here, once, and a transport failure (an httpx.TransportError
    from either) becomes Unavailable or DeadlineExceeded here, once.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        # One pool for every provider; the aiohttp session is opened on first use, on the running loop.
        self._transport: Exchange = (
            AiohttpTransport(max_connections=512) if transport is None else HttpxExchange(transport)
        )
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s

    async def send(self, provider: str, request: HttpRequest, timeout: float | None) -> HttpReply:
        """Send `request`; transport failures become Unavailable, timeouts DeadlineExceeded."""
        limit = self.timeout_s if timeout is None else timeout
        if tracing.recording():  # the HTTP client conventions on the request's span
            with tracing.http_client_span(request.method, request.url):
                reply = await self._exchange(provider, request, limit)
                tracing.http_client_response(reply.status)
            return reply
        return await self._exchange(provider, request, limit)

    async def _exchange(self, provider: str, request: HttpRequest, limit: float) -> HttpReply:
        """The one send path: the exchange, the failure mapped, the answer decoded."""
        started = time.perf_counter()
        try:
            raw = await self._transport.exchange(
                request.method,
                request.url,
                {"user-agent": _USER_AGENT, **request.headers},
                request.body,
                Timeouts(limit, min(self.connect_timeout_s, limit), limit),
            )
        except httpx.TransportError as exc:
            raise _transport_failure(provider, type(exc)) from None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw.raw_headers}
        body = raw.body
        encoding = headers.get("content-encoding")
        if encoding is not None and encoding.strip().lower() != "identity":
            body = _decoded(provider, encoding, body)
        return HttpReply(raw.status, headers, body, time.perf_counter() - started)

    async def aclose(self) -> None:
        await self._transport.aclose()


def _transport_failure(provider: str, kind: type[httpx.TransportError]) -> errors.RerankError:
    """Timeouts -> DeadlineExceeded, every other transport failure -> Unavailable (retryable)."""
    if tracing.recording():
        tracing.http_client_failure(kind)
    if issubclass(kind, httpx.TimeoutException):
        return errors.DeadlineExceeded(f"{provider}: timed out ({kind.__name__})", provider=provider)
    return errors.Unavailable(f"{provider}: connection failed ({kind.__name__})", provider=provider)


def _decoded(provider: str, encoding: str, body: bytes) -> bytes:
    """`body` decoded per its Content-Encoding (gzip, deflate, br and zstd where installed, as httpx
    decodes); a failure or an unknown coding is Unavailable (the provider answered garbage)."""
    try:
        for coding in reversed([part.strip().lower() for part in encoding.split(",") if part.strip()]):
            if coding == "identity":
                continue
            decoder = _DECODERS.get(coding)
            if decoder is None:
                raise ValueError(coding)
            body = decoder(body)
    except Exception:  # zlib.error, brotli.error, zstd errors, ValueError
        raise errors.Unavailable(f"{provider}: answer could not be decoded", provider=provider) from None
    return body


def _inflate(body: bytes) -> bytes:
    """ "deflate" as servers send it: zlib-wrapped, or (wrongly, but commonly) raw."""
    try:
        return zlib.decompress(body)
    except zlib.error:
        return zlib.decompress(body, -zlib.MAX_WBITS)


_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda body: zlib.decompress(body, zlib.MAX_WBITS | 16),
    "x-gzip": lambda body: zlib.decompress(body, zlib.MAX_WBITS | 16),
    "deflate": _inflate,
}
try:
    import brotli  # type: ignore[import-not-found,unused-ignore]

    _DECODERS["br"] = brotli.decompress
except ImportError:  # pragma: no cover - optional, as for httpx
    pass
try:
    import zstandard  # type: ignore[import-not-found,unused-ignore]

    _DECODERS["zstd"] = lambda body: zstandard.ZstdDecompressor().decompressobj().decompress(body)
except ImportError:  # pragma: no cover - optional, as for httpx
    pass


class HttpProvider(Provider):
    """Base of every HTTP provider: subclasses supply the three pure pieces (jsonspec.JsonProvider
    supplies them from a declarative spec)."""

    default_base_url: str = ""

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient) -> None:
        super().__init__(name, timeout_s=config.timeout_s, forward_metadata=config.forward_metadata)
        self.config = config
        self.options = config.options  # the kind's Options model (config.ProviderConfig typed it)
        self.http = http
        self.base_url = (config.base_url or self.default_base_url).rstrip("/")
        self._api_key: SecretStr | None = config.resolve_api_key()

    @property
    def api_key(self) -> str:
        """The provider key; raises ProviderMisconfigured when none was configured."""
        if self._api_key is None or not self._api_key.get_secret_value():
            raise errors.ProviderMisconfigured(
                f"{self.name}: no API key configured (set api_key_env or api_key_file)", provider=self.name
            )
        return self._api_key.get_secret_value()

    @classmethod
    def create(cls, name: str, config: ProviderConfig, ctx: Any) -> HttpProvider:
        """Registry constructor (ctx is a providers.registry.ProviderContext)."""
        return cls(name, config, ctx.http)

    def models(self) -> list[str]:
        return list(self.config.models)

    @abc.abstractmethod
    def build_request(self, call: ProviderCall) -> HttpRequest:
        """The provider's wire request for `call` (pure: no I/O)."""

    @abc.abstractmethod
    def parse_response(self, call: ProviderCall, reply: HttpReply) -> ProviderResult:
        """Scores from a 2xx answer (pure). Raise errors.Internal when the body makes no sense."""

    def error_message(self, reply: HttpReply) -> str:
        """Human text from an error body; providers override for their own shape."""
        try:
            body = reply.json()
        except ValueError:
            return reply.body[:300].decode(errors="replace")
        if isinstance(body, dict):
            for key in ("message", "detail", "error"):
                value = body.get(key)
                if isinstance(value, dict):
                    value = value.get("message")
                if isinstance(value, str):
                    return value
        return str(body)[:300]

    def map_error(self, reply: HttpReply) -> errors.RerankError:
        message = errors.scrub(self.error_message(reply), self._secrets())
        return map_http_status(self.name, reply.status, message[:1000], reply.headers)

    def _secrets(self) -> list[str]:
        return [self._api_key.get_secret_value()] if self._api_key is not None else []

    async def rerank(self, call: ProviderCall) -> ProviderResult:
        return self.answer(call, await self.http.send(self.name, self.build_request(call), call.timeout))

    def answer(self, call: ProviderCall, reply: HttpReply) -> ProviderResult:
        """`reply` parsed when 2xx, else the mapped error; what fails to parse is BadResponse."""
        if not 200 <= reply.status < 300:
            raise self.map_error(reply)
        try:
            return self.parse_response(call, reply)
        except errors.RerankError:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise errors.BadResponse(
                f"{self.name}: could not parse the provider's answer ({type(exc).__name__})",
                provider=self.name,
            ) from None

    def bearer(self) -> dict[str, str]:
        """`Authorization: Bearer <key>` (ProviderMisconfigured when no key is configured)."""
        return {"authorization": f"Bearer {self.api_key}"}

    def json_headers(self, call: ProviderCall, auth: Mapping[str, str]) -> dict[str, str]:
        """Content headers + auth + the call's tracing headers."""
        return {"content-type": "application/json", "accept": "application/json", **call.headers, **auth}


def check_indices(provider: str, scores: list[tuple[int, float]], count: int) -> None:
    """Refuse an answer that points outside the documents sent (a provider bug, not ours)."""
    for index, score in scores:
        if not 0 <= index < count or not math.isfinite(score):
            raise errors.BadResponse(
                f"{provider}: answer has an invalid result (index {index})", provider=provider
            )
