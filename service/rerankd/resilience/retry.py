"""Which failures are retried, which fail over, and how long to wait before a retry.

Every failure of one attempt at one target has one of three dispositions:

    RETRY     the target may answer next time (429, 5xx, connection errors, attempt timeouts, a
              garbled answer: every class with `retryable`): try it again after a back-off, then
              fall over to the next target
    FAILOVER  this target cannot serve now, but another may (CircuitOpen, Overloaded: our own
              concurrency limit for it is full, ProviderMisconfigured: the provider refused our
              credentials, UnsupportedByProvider: its adapter cannot honour a request field):
              next target at once
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

MIN_ATTEMPT_S = 0.005  # less time than this left: no attempt can succeed, so none is started


class Disposition(enum.Enum):
    """What the router does after an attempt failed."""

    RETRY = "retry"
    FAILOVER = "failover"
    FATAL = "fatal"


# Classes that say "this target cannot serve now, but another may": next target at once.
FAILOVER_ERRORS = (
    errors.CircuitOpen,
    errors.Overloaded,
    errors.ProviderMisconfigured,
    errors.UnsupportedByProvider,
)


def classify(err: errors.RerankError) -> Disposition:
    """The disposition of one failed attempt (see the module docstring)."""
    if isinstance(err, FAILOVER_ERRORS):
        return Disposition.FAILOVER
    if err.retryable:
        return Disposition.RETRY
    return Disposition.FATAL


def breaker_verdict(err: errors.RerankError) -> bool | None:
    """False when `err` counts as a failure of the target for its breaker; None when neutral.

    Our own refusals (open circuit, full concurrency limit), caller errors and back-pressure (a
    provider's 429, the local model's full queue: it is busy, not broken, and Retry-After already
    spaces the calls) say nothing about the target's health.
    """
    if isinstance(err, errors.CircuitOpen | errors.ResourceExhausted):
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
