"""Which failures are retried, which fail over, and how long to wait before a retry.

Every failure of one attempt at one target has one of three dispositions:

    RETRY     the target may answer next time (429, 5xx, connection errors, attempt timeouts, a
              garbled answer): try it again after a back-off, then fall over to the next target
    FAILOVER  this target cannot serve now, but another may (circuit open, our own concurrency
              limit for it is full, the provider refused our credentials, the provider's adapter
              cannot honour a request field): next target at once
    FATAL     the request itself is wrong (INVALID_ARGUMENT and the like): returned at once,
              neither retried nor failed over

Back-off is exponential with full jitter: before retry n (1 = the first retry) the wait is uniform
in [0, min(max_backoff_s, initial_backoff_s * multiplier ** (n - 1))]. A provider's Retry-After
(already parsed into `RerankError.retry_after`) raises the wait to at least that long; one longer
than `max_retry_after_s`, or any wait that would not leave time for another attempt before the
caller's deadline, means "do not retry this target".
"""

from __future__ import annotations

import enum
import random

from rerankd import errors
from rerankd.config import RetryConfig
from rerankd.resilience.breaker import CircuitOpen
from rerankd.resilience.limits import Overloaded

MIN_ATTEMPT_S = 0.005  # less time than this left: no attempt can succeed, so none is started
UNSUPPORTED_BY_PROVIDER = "UNSUPPORTED_BY_PROVIDER"  # reason of providers.jsonwire.unsupported()


class Disposition(enum.Enum):
    """What the router does after an attempt failed."""

    RETRY = "retry"
    FAILOVER = "failover"
    FATAL = "fatal"


class BadResponse(errors.Unavailable):
    """The provider answered something we cannot use (malformed JSON, impossible indices).

    A gateway that gets a broken answer from upstream reports it as HTTP 502 Bad Gateway; in gRPC
    that is UNAVAILABLE: retryable, since the next answer (or the next target's) may be fine.
    """

    reason = "PROVIDER_BAD_RESPONSE"


def normalise(err: errors.RerankError) -> errors.RerankError:
    """`err` as the router reports it: a provider's unusable answer becomes BadResponse."""
    if type(err) is errors.Internal and err.provider:
        return BadResponse(err.message, provider=err.provider)
    return err


def classify(err: errors.RerankError) -> Disposition:
    """The disposition of one failed attempt (see the module docstring)."""
    if isinstance(err, CircuitOpen | Overloaded | errors.ProviderMisconfigured):
        return Disposition.FAILOVER
    if isinstance(err, errors.InvalidArgument) and err.reason == UNSUPPORTED_BY_PROVIDER:
        return Disposition.FAILOVER  # refused before sending: another target may support it
    if err.retryable:
        return Disposition.RETRY
    return Disposition.FATAL


def breaker_verdict(err: errors.RerankError) -> bool | None:
    """False when `err` counts as a failure of the target for its breaker; None when neutral.

    Our own refusals (open circuit, full concurrency limit), caller errors and back-pressure (a
    provider's 429, the local model's full queue: it is busy, not broken, and Retry-After already
    spaces the calls) say nothing about the target's health.
    """
    if isinstance(err, CircuitOpen | Overloaded | errors.ResourceExhausted):
        return None
    if isinstance(err, errors.ProviderMisconfigured) or err.retryable:
        return False
    return None


def backoff_cap(policy: RetryConfig, retry: int) -> float:
    """Upper bound of the wait before retry number `retry` (1 = the first retry)."""
    exponent = max(retry - 1, 0)
    cap = policy.initial_backoff_s * policy.multiplier**exponent
    return min(cap, policy.max_backoff_s)


def backoff(policy: RetryConfig, retry: int, rng: random.Random) -> float:
    """Full-jitter back-off before retry number `retry`."""
    return rng.uniform(0.0, backoff_cap(policy, retry))


def retry_delay(
    policy: RetryConfig, attempt: int, err: errors.RerankError, rng: random.Random, remaining: float
) -> float | None:
    """Seconds to wait before trying the same target again after attempt number `attempt` failed
    with `err`, or None when it must not be retried (attempts used up, Retry-After too long, or
    no time for another attempt within `remaining` seconds).
    """
    if attempt >= policy.max_attempts or classify(err) is not Disposition.RETRY:
        return None
    delay = backoff(policy, attempt, rng)
    if err.retry_after is not None:
        if err.retry_after > policy.max_retry_after_s:
            return None
        delay = max(delay, err.retry_after)
    if delay + MIN_ATTEMPT_S >= remaining:
        return None
    return delay
