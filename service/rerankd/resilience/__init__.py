"""Resilience mechanisms the router composes: retries, circuit breakers, concurrency limits, events.

Each module is small and independent of the others and of gRPC:

    retry.py    which failures to retry or fail over, and how long to back off (full jitter)
    breaker.py  a circuit breaker per target (closed -> open -> half-open -> closed)
    limits.py   a semaphore with a bounded wait; past it, RESOURCE_EXHAUSTED with RetryInfo
    events.py   counters of retries, fallbacks, breaker transitions, overloads and cache results,
                with hooks a metrics module can subscribe to
"""
