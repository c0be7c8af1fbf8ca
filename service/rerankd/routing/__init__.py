"""Routing: model names to targets, and the path of one request through them.

targets.py       names -> targets (aliases, provider models, provider/model, `match` patterns)
router.py        the coordinator: cache, server slot, the route's strategy
policy.py        a route's policy: strategy, retries, cache, chunk concurrency
request.py       what one request carries through a strategy (`RouteRequest`)
strategies/      fallback, hedge, cascade
target_call.py   one target: breaker permit, concurrency slot, timeout, retries
target_state.py  each target's breaker and concurrency limit
chunking.py      chunks past a target's `max_documents`, merged; `on_partial`
attempt.py       one attempt (span, metrics, answer check) and the attempt log
ranking.py       the final order and `top_n`
"""

from rerankd.routing.request import PartialSink, RouteRequest
from rerankd.routing.router import Router
from rerankd.routing.targets import ModelEntry, Target

__all__ = ["ModelEntry", "PartialSink", "RouteRequest", "Router", "Target"]
