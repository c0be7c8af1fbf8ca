"""Per-caller rate limits: one token bucket per caller name, in this process.

A bucket holds up to `burst` tokens and refills at `rate` tokens per second; each request takes
one. `check()` refuses at once with errors.ResourceExhausted carrying the time until the next token
(sent to gRPC callers as RetryInfo, to HTTP callers as Retry-After); `wait()` paces instead, for the
messages of a RerankBatch stream: it reserves the next token and sleeps until it is due (HTTP/2 flow
control then slows the sender). Limits are per
replica: N replicas admit N times the rate. Callers are named by authentication, so the number of
buckets is bounded by the token file (or the client CA); with auth off everyone is "anonymous".
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rerankd import errors, metrics

if TYPE_CHECKING:
    from rerankd.config import Settings


@dataclass(slots=True)
class TokenBucket:
    """`burst` tokens at most, refilled at `rate` per second (rate > 0)."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token if there is one and return 0.0; else return seconds until there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def reserve(self, now: float) -> float:
        """Take one token now, going into debt if need be; return how long to wait for it."""
        self._refill(now)
        self.tokens -= 1.0
        return max(-self.tokens / self.rate, 0.0)


class RateLimiter:
    """Token buckets by caller name; callers without a configured rate are not limited."""

    def __init__(
        self,
        default_rps: float = 0.0,
        burst: int = 0,
        per_caller: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default_rps = default_rps
        self.burst = burst
        self.per_caller = dict(per_caller or {})
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter | None:
        """The limiter the settings ask for; None when no caller has a rate.

        A caller's rate is its `callers` entry's `rate_limit_rps`, else its `rate_limit_callers`
        entry, else `rate_limit_rps`; callers not listed anywhere take the `callers["*"]` rate
        when that entry sets one.
        """
        default = settings.rate_limit_rps
        rates = dict(settings.rate_limit_callers)
        for name, entry in settings.callers.items():
            if name == "*":
                if entry.rate_limit_rps is not None:
                    default = entry.rate_limit_rps
            else:
                own = entry.rate_limit_rps
                rates[name] = own if own is not None else rates.get(name, settings.rate_limit_rps)
        if not default and not any(rates.values()):
            return None
        return cls(default, settings.rate_limit_burst, rates)

    def rate_of(self, caller: str) -> float:
        return self.per_caller.get(caller, self.default_rps)

    def _bucket(self, caller: str) -> TokenBucket | None:
        bucket = self._buckets.get(caller)
        if bucket is None:
            rate = self.rate_of(caller)
            if rate <= 0:
                return None
            burst = float(self.burst or max(1, math.ceil(rate)))
            bucket = self._buckets[caller] = TokenBucket(rate, burst, burst, self._clock())
        return bucket

    def delay(self, caller: str) -> float:
        """Take a token for `caller`; 0.0 when admitted, else the seconds until a token is free."""
        bucket = self._bucket(caller)
        return 0.0 if bucket is None else bucket.take(self._clock())

    def check(self, caller: str) -> None:
        """Admit one request of `caller` or raise errors.ResourceExhausted with the retry delay."""
        wait = self.delay(caller)
        if wait > 0.0:
            metrics.RATE_LIMITED.labels(caller=caller).inc()
            raise errors.ResourceExhausted(
                f"rate limit of caller {caller!r} exceeded ({self.rate_of(caller):g} requests/s); "
                f"retry in {wait:.3f}s",
                retry_after=wait,
                reason="RATE_LIMITED",
            )

    async def wait(self, caller: str) -> None:
        """Take a token for `caller`, waiting (in line with earlier waiters) until it is due."""
        bucket = self._bucket(caller)
        if bucket is not None and (pause := bucket.reserve(self._clock())) > 0.0:
            await asyncio.sleep(pause)
