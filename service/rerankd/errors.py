"""The error taxonomy, and the one place each error becomes a gRPC status (and an HTTP status).

    RerankError                 base; carries code, HTTP status, retryable, reason, details
    ├── InvalidArgument         the request is wrong (field violations name the fields)
    │   ├── UnsupportedByProvider   a target's adapter cannot honour a request field (fails over)
    │   ├── EmptyTexts              TEI's own "Empty" error type (an empty `texts`)
    │   ├── BodyTooLarge            an HTTP body over max_receive_message_bytes (HTTP 413)
    │   └── NotJson                 an HTTP body declared as anything but JSON (HTTP 415)
    ├── NotFound                unknown model
    ├── Unauthenticated         the caller's credentials are missing or wrong
    ├── PermissionDenied        the caller is known but may not do this (model, document cap)
    ├── ResourceExhausted       over a limit or rate (ours or the provider's); RetryInfo
    │   └── Overloaded          our own concurrency limit is full (fails over, breaker-neutral)
    │       └── QueueFull       the embedded model's queue is at its bound
    ├── Unavailable             provider 5xx, connection failure, draining
    │   ├── BadResponse         the provider answered something we cannot use (retried)
    │   └── CircuitOpen         the target's breaker is open: skipped without a call (fails over)
    ├── DeadlineExceeded        the caller's budget or an attempt's timeout ran out
    │   └── SlowUpload          the HTTP caller did not finish sending its body (HTTP 408)
    ├── ProviderMisconfigured   the provider refused *our* key or setup (caller cannot fix it)
    └── Internal                our bug or an answer we cannot parse

What the router does after a failed attempt follows from the class alone (resilience/retry.py):
`retryable` classes are retried, the failover classes go to the next target at once, the rest
are returned to the caller. No reason string decides it; `reason` is what callers are told.

Messages are scrubbed of anything that looks like a credential before they leave the process:
`scrub()` removes every secret value registered with `register_secret()` (provider keys, caller
tokens, as they are read) and substrings shaped like credentials. Log lines go through it too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "rerankd"

_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    # A keyword, then a value: after ":", "=" or a quote, any value; after spaces alone only one
    # shaped like a credential (a digit in it, or 20+ characters), so that prose such as "a token
    # in the authorization header" keeps its words. Registered secrets are removed whatever they look like.
    re.compile(
        r"(?i)((?:api[-_]?key|token|secret|password|authorization)"
        r"(?:\s*[\"':=][\"'\s:=]*|\s+(?=[^\s\"',;]*[0-9])|\s+(?=[^\s\"',;]{20})))[^\s\"',;]{6,}"
    ),
    # Key shapes: generic secret-key prefixes here; each provider's own come from its spec
    # (JsonSpec.key_prefixes, through register_key_prefixes) and are added at PREFIX_SLOT.
    re.compile(r"\b(sk|pk|rk)[-_][A-Za-z0-9_-]{12,}\b"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
]
_PREFIX_SLOT = 2  # where the key-prefix pattern sits in _SECRET_PATTERNS
_GENERIC_PREFIXES = ("sk", "pk", "rk")
_key_prefixes: tuple[str, ...] = _GENERIC_PREFIXES


def _any_pattern(patterns: Sequence[re.Pattern[str]]) -> re.Pattern[str]:
    """One search for "could any pattern match": most texts (ids, model names) need no substitution."""
    return re.compile(
        "|".join(f"(?i:{p.pattern[4:]})" if p.flags & re.IGNORECASE else f"(?:{p.pattern})" for p in patterns)
    )


_ANY_SECRET_PATTERN = _any_pattern(_SECRET_PATTERNS)


def register_key_prefixes(prefixes: Sequence[str]) -> None:
    """Scrub keys shaped `<prefix>-...` or `<prefix>_...` (12+ characters after) from now on.

    Providers register their own key shapes when built (jsonspec.JsonSpec.key_prefixes): Jina's
    `jina_`, Pinecone's `pcsk_`, Voyage's `pa-`, NVIDIA's `nvapi-`, ...
    """
    global _key_prefixes, _ANY_SECRET_PATTERN
    new = tuple(sorted({*_key_prefixes, *prefixes}))
    if new == _key_prefixes:
        return
    alternatives = "|".join(re.escape(prefix) for prefix in new)
    patterns = list(_SECRET_PATTERNS)
    patterns[_PREFIX_SLOT] = re.compile(rf"\b({alternatives})[-_][A-Za-z0-9_-]{{12,}}\b")
    _SECRET_PATTERNS[:] = patterns
    _key_prefixes = new
    _ANY_SECRET_PATTERN = _any_pattern(patterns)
    _SCRUBBED.clear()


_MIN_REGISTERED = 8  # shorter values would redact ordinary words from every message
_known_secrets: tuple[str, ...] = ()  # replaced, never mutated: safe to read from any thread


def register_secret(value: str) -> None:
    """Remember a secret value (a key or token as read from env or a file) so scrub() removes it."""
    global _known_secrets
    if len(value) >= _MIN_REGISTERED and value not in _known_secrets:
        _known_secrets = tuple(sorted({*_known_secrets, value}, key=len, reverse=True))
        _SCRUBBED.clear()  # a remembered text may hold the new secret


_SCRUBBED: dict[str, str] = {}  # short texts already scrubbed (log fields repeat); reset with the secrets
_MAX_SCRUBBED, _MAX_SCRUBBED_LENGTH = 4096, 256


def scrub_short(text: str) -> str:
    """scrub(text) for the short values log lines repeat (methods, models, ids), remembered."""
    if len(text) > _MAX_SCRUBBED_LENGTH:
        return scrub(text)
    done = _SCRUBBED.get(text)
    if done is None:
        if len(_SCRUBBED) >= _MAX_SCRUBBED:
            _SCRUBBED.clear()
        done = _SCRUBBED[text] = scrub(text)
    return done


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """Remove registered and given secret values, and credential-looking substrings, from `text`."""
    for secret in (*secrets, *_known_secrets):
        if len(secret) >= 4 and secret in text:
            text = text.replace(secret, "[REDACTED]")
    if _ANY_SECRET_PATTERN.search(text) is None:
        return text
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + "[REDACTED]", text)
    return text


class RerankError(Exception):
    """Base of every error the service reports to callers."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    retryable: bool = False
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        field_violations: Sequence[tuple[str, str]] = (),
        retry_after: float | None = None,
        provider: str = "",
        reason: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field_violations = list(field_violations)
        self.retry_after = retry_after
        self.provider = provider
        if reason is not None:
            self.reason = reason
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class InvalidArgument(RerankError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    reason = "INVALID_ARGUMENT"


class NotFound(RerankError):
    code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    reason = "MODEL_NOT_FOUND"


class Unauthenticated(RerankError):
    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    reason = "UNAUTHENTICATED"


class PermissionDenied(RerankError):
    """An authenticated caller asked for what its permissions do not cover (rerankd.authz)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403
    reason = "PERMISSION_DENIED"


class ResourceExhausted(RerankError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    retryable = True
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(RerankError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    retryable = True
    reason = "UNAVAILABLE"


class DeadlineExceeded(RerankError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504
    retryable = True
    reason = "DEADLINE_EXCEEDED"


class UnsupportedByProvider(InvalidArgument):
    """A target's adapter cannot honour a unified request field; refused before sending, so
    another target (which may support it) is tried at once."""

    reason = "UNSUPPORTED_BY_PROVIDER"


class EmptyTexts(InvalidArgument):
    """An empty `texts` on the TEI dialect, which TEI reports as its own error type (Empty, 400)."""


class BodyTooLarge(InvalidArgument):
    """The HTTP caller's body is over max_receive_message_bytes (HTTP 413, in every dialect)."""

    http_status = 413
    reason = "BODY_TOO_LARGE"


class NotJson(InvalidArgument):
    """The HTTP caller declared a body that is not JSON (HTTP 415): a browser's form or text/plain
    post, which a web page may send cross-origin to a local rerankd without a CORS preflight."""

    http_status = 415
    reason = "UNSUPPORTED_MEDIA_TYPE"


class Overloaded(ResourceExhausted):
    """Our own concurrency limit is full (not a provider's rate limit)."""

    reason = "OVERLOADED"


class QueueFull(Overloaded):
    """The embedded model's queue is at its bound; retry after the time it needs to drain.

    An `Overloaded` (our own limit, not the model's health): the router fails over at once instead
    of retrying, and the target's circuit breaker does not count it as a failure.
    """

    reason = "LOCAL_QUEUE_FULL"


class BadResponse(Unavailable):
    """The provider answered something we cannot use (malformed JSON, impossible indices).

    A gateway that gets a broken answer from upstream reports it as HTTP 502 Bad Gateway; in gRPC
    that is UNAVAILABLE: retryable, since the next answer (or the next target's) may be fine.
    """

    reason = "PROVIDER_BAD_RESPONSE"


class CircuitOpen(Unavailable):
    """The target's breaker is open: it was skipped without a call."""

    reason = "CIRCUIT_OPEN"


class SlowUpload(DeadlineExceeded):
    """The HTTP caller did not finish sending its body in time (HTTP 408)."""

    http_status = 408
    retryable = False
    reason = "REQUEST_TIMEOUT"


class ProviderMisconfigured(RerankError):
    """The provider refused our credentials or configuration: an operator must act."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 502
    reason = "PROVIDER_AUTH"


class Internal(RerankError):
    code = grpc.StatusCode.INTERNAL
    http_status = 500
    reason = "INTERNAL"


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside an exception group (a TaskGroup's failures), nested groups flattened,
    in order: what concurrent calls (chunks, passages' batches) choose the one to report from."""
    found: list[BaseException] = []
    for item in group.exceptions:
        found.extend(leaves(item) if isinstance(item, BaseExceptionGroup) else [item])
    return found


def invalid(field: str, description: str) -> InvalidArgument:
    """An INVALID_ARGUMENT about one request field; the message names the field."""
    return InvalidArgument(f"{field}: {description}", field_violations=[(field, description)])


def to_status(err: RerankError, request_id: str = "") -> grpc.Status:
    """The grpc.Status (with google.rpc details) that reports `err` to a gRPC caller."""
    details: list[any_pb2.Any] = []
    if err.field_violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in err.field_violations
            ]
        )
        details.append(_pack(bad))
    if err.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(max(err.retry_after, 0.0) * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    metadata = {"retryable": "true" if err.retryable else "false"}
    if err.provider:
        metadata["provider"] = err.provider
    if request_id:
        metadata["request_id"] = request_id
    details.append(
        _pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=metadata))
    )
    status = status_pb2.Status(code=err.code.value[0], message=scrub(err.message), details=details)
    return rpc_status.to_status(status)


def internal_for(request_id: str) -> Internal:
    """The error reported for an unexpected exception: no internals, just the request id."""
    return Internal(f"internal error (request id {request_id})")


def code_number(code: grpc.StatusCode) -> int:
    return int(code.value[0])


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


__all__ = [
    "BadResponse",
    "CircuitOpen",
    "DeadlineExceeded",
    "EmptyTexts",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "Overloaded",
    "PermissionDenied",
    "ProviderMisconfigured",
    "QueueFull",
    "RerankError",
    "ResourceExhausted",
    "SlowUpload",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedByProvider",
    "invalid",
    "register_key_prefixes",
    "register_secret",
    "scrub",
    "to_status",
]
