"""Caller authentication: bearer tokens from a secret file, and mTLS client certificates.

Off unless configured (the localhost sidecar needs none); on when `auth_tokens_file` or
`tls_client_ca_file` is set (standalone). The token file holds one caller per line:

    # name: token           (blank lines and lines starting with # are ignored)
    search-api: 3f9c1e0b7a2d4c58b6e1f0a9d8c7b6a5
    search-api: 9a8b7c6d5e4f30211203f4e5d6c7b8a9   # a second token for rotation
    batch-jobs: 5d6e7f8091a2b3c4d5e6f708192a3b4c

A caller presents `authorization: Bearer <token>` (gRPC metadata or HTTP header; `api-key` and
`x-api-key` also work for HTTP SDKs that send those). Tokens are kept only as SHA-256 digests and
every digest is compared with hmac.compare_digest, all of them on every call, so neither the
comparison nor the lookup leaks how much of a token matched. The file is re-read when it changes
(a rotated Kubernetes Secret), at most every few seconds. A verified client certificate (mTLS)
names its caller by common name, else its first subject alternative name.

The caller of the current call lives in the `CALLER` context variable: log lines and metrics read
it. `Authenticator.authenticate` is the one check; the gRPC interceptor
(`rerankd.api.grpc_guard`) and the HTTP front door (`http_authorizer`) both call it. Each `Caller`
carries its `Permissions` (rerankd.authz: models, document cap) from the settings' `callers`, looked
up by name as it is authenticated, so a rotated token file's new callers get theirs at once.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rerankd import errors, metrics
from rerankd.authz import ALLOW_ALL, Permissions, Policy

if TYPE_CHECKING:
    from rerankd.config import Settings
    from rerankd.ratelimit import RateLimiter

_LOG = logging.getLogger("rerankd.auth")
CALLER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_TOKEN_CHARS = 16
_RELOAD_EVERY_S = 5.0
_TOKEN_HEADERS = ("api-key", "x-api-key")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a name from the token file or certificate, how it was established, and what
    it may do (rerankd.authz)."""

    name: str
    method: str  # "token", "mtls" or "none" (auth off)
    permissions: Permissions = ALLOW_ALL

    def __str__(self) -> str:
        return self.name


ANONYMOUS = Caller("anonymous", "none")
CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("rerankd_caller", default=None)


def current_caller() -> Caller | None:
    """The caller of the call being served in this task, if any."""
    return CALLER.get()


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the line, never the token."""


def parse_tokens(text: str, source: str = "tokens file") -> list[tuple[str, str]]:
    """(caller name, token) pairs from the token file's text; refuses malformed lines and weak tokens."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        name, token = name.strip(), token.split(" #", 1)[0].strip()
        where = f"{source}, line {number}"
        if not sep or not token:
            raise TokenFileError(f"{where}: expected 'caller-name: token'")
        if not CALLER_NAME.match(name):
            raise TokenFileError(f"{where}: caller name must match {CALLER_NAME.pattern}")
        if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
            raise TokenFileError(f"{where}: token must be at least {MIN_TOKEN_CHARS} characters, no spaces")
        if token in seen:
            raise TokenFileError(f"{where}: the same token is listed twice")
        seen.add(token)
        pairs.append((name, token))
    return pairs


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenStore:
    """Caller tokens as digests, from a file re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: tuple[tuple[bytes, str], ...] = ()
        self._signature: tuple[int, int, int] | None = None
        self._checked = 0.0
        self.load()

    def load(self) -> None:
        """Read the file now; raises TokenFileError (start-up fails rather than admitting anyone)."""
        try:
            stat = os.stat(self.path)
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(f"cannot read {self.path}: {type(exc).__name__}") from None
        pairs = parse_tokens(text, str(self.path))
        if not pairs:
            raise TokenFileError(f"{self.path}: no tokens")
        for _, token in pairs:
            errors.register_secret(token)
        self._entries = tuple((_digest(token), name) for name, token in pairs)
        self._signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        self._checked = time.monotonic()
        _LOG.info("loaded %d caller tokens for %d callers", len(pairs), len({n for n, _ in pairs}))

    def reload_if_changed(self) -> None:
        """Re-read the file if it changed (checked at most every few seconds). A bad new file is
        logged and the tokens in use stay, so a broken rotation does not lock every caller out."""
        now = time.monotonic()
        if now - self._checked < _RELOAD_EVERY_S:
            return
        self._checked = now
        try:
            stat = os.stat(self.path)
        except OSError:
            return
        if (stat.st_ino, stat.st_mtime_ns, stat.st_size) == self._signature:
            return
        try:
            self.load()
        except TokenFileError as exc:
            _LOG.error("keeping the previous caller tokens: %s", exc)

    def lookup(self, token: str) -> str | None:
        """The caller name of `token`, or None. Compares against every entry in constant time."""
        presented = _digest(token)
        found: str | None = None
        for digest, name in self._entries:
            if hmac.compare_digest(presented, digest) and found is None:
                found = name
        return found

    @property
    def callers(self) -> frozenset[str]:
        return frozenset(name for _, name in self._entries)


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The bearer token in lower-cased `headers` (authorization: Bearer, else api-key/x-api-key)."""
    value = headers.get("authorization")
    if value is not None:
        scheme, _, token = value.strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    for name in _TOKEN_HEADERS:
        value = headers.get(name)
        if value is not None:
            return value.strip()
    return None


def certificate_caller(auth_context: Mapping[str, object]) -> str | None:
    """The caller named by a verified client certificate in a gRPC auth context, else None.

    With a client CA configured the TLS handshake verifies any certificate presented, so one in
    the auth context is already trusted; its common name (else first SAN) is the caller's name.
    """
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        values = auth_context.get(key)
        if isinstance(values, list | tuple):
            for value in values:
                name = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                if name:
                    return name[:64]
    return None


class Authenticator:
    """Decides who is calling, or refuses with errors.Unauthenticated."""

    def __init__(
        self, tokens: TokenStore | None = None, *, mtls: bool = False, policy: Policy | None = None
    ) -> None:
        self.tokens = tokens
        self.mtls = mtls
        self.policy = policy or Policy()
        permissions = self.policy.permissions(ANONYMOUS.name)
        self.anonymous = (
            ANONYMOUS if permissions == ALLOW_ALL else Caller(ANONYMOUS.name, "none", permissions)
        )
        """The caller of every call while authentication is off (`anonymous`, with its permissions)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        tokens = TokenStore(settings.auth_tokens_file) if settings.auth_tokens_file is not None else None
        return cls(
            tokens, mtls=settings.tls_client_ca_file is not None, policy=Policy.from_settings(settings)
        )

    @property
    def enabled(self) -> bool:
        return self.tokens is not None or self.mtls

    def authenticate(self, headers: Mapping[str, str], certificate_name: str | None = None) -> Caller:
        """The caller of a call with lower-cased `headers` and, over mTLS, its certificate's name.

        A verified certificate wins; otherwise a valid bearer token is needed. With auth off every
        caller is `anonymous`. Never echoes what was presented.
        """
        if not self.enabled:
            return self.anonymous
        if self.mtls and certificate_name:
            return Caller(certificate_name, "mtls", self.policy.permissions(certificate_name))
        token = presented_token(headers)
        if self.tokens is None:
            raise errors.Unauthenticated(
                "a client certificate signed by the configured CA is required", reason="NO_CREDENTIALS"
            )
        if not token:
            raise errors.Unauthenticated(
                "credentials required: a bearer token in the authorization metadata", reason="NO_CREDENTIALS"
            )
        self.tokens.reload_if_changed()
        name = self.tokens.lookup(token)
        if name is None:
            raise errors.Unauthenticated("the bearer token is not valid", reason="INVALID_TOKEN")
        return Caller(name, "token", self.policy.permissions(name))


Authorizer = Callable[[Mapping[str, str]], Awaitable[None]]


def http_authorizer(authenticator: Authenticator, limiter: RateLimiter | None = None) -> Authorizer:
    """The HTTP front door's check: authenticate, then charge the caller's rate limit.

    Sets CALLER for the rest of the request (the awaited coroutine shares the request's context),
    so access lines name the caller. Raises errors.Unauthenticated or errors.ResourceExhausted.
    """

    async def authorize(headers: Mapping[str, str]) -> None:
        try:
            caller = authenticator.authenticate(headers)
        except errors.Unauthenticated as exc:
            metrics.AUTH_REFUSALS.labels(reason=exc.reason).inc()
            raise
        CALLER.set(caller)
        if limiter is not None:
            limiter.check(caller.name)

    return authorize
