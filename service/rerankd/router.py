"""Model names to provider targets, and the path of one request through them.

A name resolves to an ordered list of targets: a route alias from the config, a model a provider
serves under its own name, an explicit "provider/model", or, last, a route whose `match` patterns
(globs such as `rerank-*`) the name fits, in config order (the drop-in names: docs/http-api.md).
Targets are tried in priority order (weighted shuffle among equal priorities). For one request the router:

1. answers from the route's response cache when it has one and the request was seen (cache.py);
2. takes a server-wide slot, waiting a bounded time (resilience/limits.py);
3. for each target in order: skips it when its circuit breaker is open (resilience/breaker.py),
   splits the documents into chunks of at most the target's `max_documents`, and makes each call
   under the target's own concurrency limit with a timeout inside the caller's deadline,
   retrying retryable failures with jittered exponential back-off and Retry-After
   (resilience/retry.py);
4. falls over to the next target when a target fails, returns a caller error (INVALID_ARGUMENT)
   at once, and stops when the deadline leaves no time for another attempt.

All chunks of one answer come from one target, so their scores come from one model and are
comparable; they are merged by score and `top_n` is applied after the merge. Every call is
recorded in `Ranked.attempts`; retries, fallbacks, breaker transitions, overloads and cache
lookups are counted in `Router.events`. Cancellation (the caller hung up, the deadline passed)
propagates into the provider calls, which close their connections; no attempt starts after it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import math
import operator
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from opentelemetry.trace import SpanKind, Status, StatusCode

from rerankd import errors, metrics, tracing
from rerankd.cache import ResponseCache
from rerankd.config import (
    DEFAULT_ALIAS,
    LOCAL_PROVIDER,
    BreakerConfig,
    ProviderConfig,
    RetryConfig,
    RouteConfig,
    Settings,
)
from rerankd.domain import Attempt, Ranked, RerankQuery, Scored, Usage
from rerankd.providers.base import Provider, ProviderCall, ProviderResult
from rerankd.resilience.breaker import CircuitBreaker, Permit, State
from rerankd.resilience.events import EventCounter
from rerankd.resilience.limits import ConcurrencyLimit
from rerankd.resilience.retry import (
    MIN_ATTEMPT_S,
    BadResponse,
    Disposition,
    breaker_verdict,
    classify,
    normalise,
    retry_delay,
)

_LOG = logging.getLogger("rerankd.router")
_MAX_TARGET_STATES = 1024  # breakers + limits kept for ad-hoc "provider/model" names


@dataclass(frozen=True, slots=True)
class Target:
    """One provider model a name can be served by."""

    provider: Provider
    model: str
    weight: int = 1
    priority: int = 0

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.model}"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A name callers may use, for ListModels."""

    name: str
    alias: bool
    targets: Sequence[Target]


@dataclass(slots=True)
class RoutePolicy:
    """How requests for one name are served: retries, cache and chunk concurrency."""

    retry: RetryConfig = field(default_factory=RetryConfig)
    cache: ResponseCache | None = None
    chunk_concurrency: int = 8

    @classmethod
    def from_config(cls, route: RouteConfig) -> RoutePolicy:
        cache = ResponseCache(route.cache) if route.cache.enabled else None
        return cls(route.retry, cache, route.chunk_concurrency)


@dataclass(slots=True)
class TargetState:
    """What the router keeps per target: its circuit breaker and its concurrency limit."""

    breaker: CircuitBreaker
    limit: ConcurrencyLimit


class Router:
    """Resolves names and runs requests across targets with retries, fallbacks and limits."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        routes: Mapping[str, Sequence[Target]],
        *,
        policies: Mapping[str, RoutePolicy] | None = None,
        patterns: Sequence[tuple[str, str]] = (),
        provider_configs: Mapping[str, ProviderConfig] | None = None,
        max_concurrent_requests: int = 512,
        queue_timeout_s: float = 0.25,
        max_chunk_concurrency: int = 8,
        rng: random.Random | None = None,
        events: EventCounter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.providers = dict(providers)
        self.routes = {name: list(targets) for name, targets in routes.items()}
        self.policies = dict(policies or {})
        # (glob pattern, route alias) in config order: names no alias or provider serves
        self.patterns = [(pattern, alias) for pattern, alias in patterns if alias in self.routes]
        self.provider_configs = dict(provider_configs or {})
        self.max_chunk_concurrency = max_chunk_concurrency
        self.queue_timeout_s = queue_timeout_s
        self.events = events or EventCounter()
        self.server_limit = ConcurrencyLimit(
            "server",
            max_concurrent_requests,
            scope="server",
            on_reject=lambda: self.events.emit("overload", scope="server", target=""),
        )
        self._default_policy = RoutePolicy(chunk_concurrency=max_chunk_concurrency)
        self._rng = rng or random.Random()
        self._clock = clock
        self._targets: OrderedDict[str, TargetState] = OrderedDict()
        self._direct: dict[str, list[Target]] = {}
        for provider in self.providers.values():
            for model in provider.models():
                self._direct.setdefault(model, [Target(provider, model)])
        # The configured names and targets are the only metric label values (metrics.py).
        metrics.know_models([*self.routes, *self._direct])
        metrics.know_targets(
            t.label for named in (self.routes, self._direct) for ts in named.values() for t in ts
        )

    @classmethod
    def from_config(
        cls,
        providers: Mapping[str, Provider],
        routes: Mapping[str, RouteConfig],
        *,
        provider_configs: Mapping[str, ProviderConfig] | None = None,
        settings: Settings | None = None,
    ) -> Router:
        """Build from configured routes; `default` goes to the local model unless configured."""
        built: dict[str, list[Target]] = {}
        for alias, route in routes.items():
            targets = []
            for index, spec in enumerate(route.targets):
                provider = providers.get(spec.provider)
                if provider is None:
                    raise ValueError(f"routes.{alias}.targets[{index}]: unknown provider {spec.provider!r}")
                model = spec.model or next(iter(provider.models()), "")
                if not model:
                    raise ValueError(
                        f"routes.{alias}.targets[{index}]: provider {spec.provider!r} needs a model"
                    )
                targets.append(Target(provider, model, spec.weight, spec.priority))
            built[alias] = targets
        local = providers.get(LOCAL_PROVIDER)
        if DEFAULT_ALIAS not in built and local is not None:
            built[DEFAULT_ALIAS] = [Target(local, next(iter(local.models())))]
        policies = {alias: RoutePolicy.from_config(route) for alias, route in routes.items()}
        patterns = [(pattern, alias) for alias, route in routes.items() for pattern in route.match]
        settings = settings or Settings()
        return cls(
            providers,
            built,
            policies=policies,
            patterns=patterns,
            provider_configs=provider_configs,
            max_concurrent_requests=settings.max_concurrent_requests,
            queue_timeout_s=settings.queue_timeout_s,
        )

    # -- names ---------------------------------------------------------------------------------
    def entries(self) -> list[ModelEntry]:
        """Names for ListModels; each alias's targets in fallback (priority) order."""
        listed = [
            ModelEntry(name, True, sorted(targets, key=lambda t: t.priority))
            for name, targets in sorted(self.routes.items())
        ]
        listed += [
            ModelEntry(name, False, targets)
            for name, targets in sorted(self._direct.items())
            if name not in self.routes
        ]
        return listed

    def resolve(self, name: str) -> list[Target]:
        """Targets for `name` in the order they will be tried; NotFound lists the known names."""
        name = name or DEFAULT_ALIAS
        targets = self.routes.get(name) or self._direct.get(name)
        if targets is None:
            provider_name, sep, model = name.partition("/")
            provider = self.providers.get(provider_name) if sep else None
            if provider is not None and model:
                targets = [Target(provider, model)]
        if targets is None:
            alias = self.matched_route(name)
            targets = self.routes.get(alias) if alias else None
        if targets is None:
            known = ", ".join(entry.name for entry in self.entries())
            patterns = ", ".join(pattern for pattern, _ in self.patterns) or "none"
            raise errors.NotFound(
                f"model {name!r} is not served here; known: {known} (or provider/model); route"
                f" patterns: {patterns} (a route's `match` answers other names: deploy/config/drop-in.yaml"
                " answers the Cohere, Pinecone, Voyage and Jina SDKs' default names)",
                field_violations=[("model", f"unknown model {name!r}")],
            )
        return self._order(targets)

    def matched_route(self, name: str) -> str:
        """The alias of the first route whose `match` patterns `name` fits ("" when none), for names
        that are not an alias, a served model name or provider/model."""
        if name in self.routes or name in self._direct:
            return ""
        for pattern, alias in self.patterns:
            if fnmatch.fnmatchcase(name, pattern):
                return alias
        return ""

    def _order(self, targets: Sequence[Target]) -> list[Target]:
        if len(targets) == 1:
            return [targets[0]]
        ordered: list[Target] = []
        for priority in sorted({t.priority for t in targets}):
            group = [t for t in targets if t.priority == priority]
            while group:
                weights = [max(t.weight, 0) for t in group]
                pick = self._rng.choices(group, weights=weights)[0] if sum(weights) > 0 else group[0]
                ordered.append(pick)
                group.remove(pick)
        return ordered

    def policy(self, name: str) -> RoutePolicy:
        """The policy requests for `name` are served with (defaults for direct model names)."""
        name = name or DEFAULT_ALIAS
        policy = self.policies.get(name)
        if policy is None and self.patterns:
            policy = self.policies.get(self.matched_route(name))
        return policy or self._default_policy

    def target_state(self, target: Target) -> TargetState:
        """The breaker and concurrency limit of `target` (created on first use)."""
        label = target.label
        state = self._targets.get(label)
        if state is not None:
            self._targets.move_to_end(label)
            return state
        config = self.provider_configs.get(target.provider.name)
        breaker_config = config.breaker if config is not None else BreakerConfig()
        state = TargetState(
            CircuitBreaker(label, breaker_config, clock=self._clock, on_transition=self._transition),
            ConcurrencyLimit(
                label,
                config.max_concurrency if config is not None else 64,
                scope="target",
                on_reject=lambda: self.events.emit("overload", scope="target", target=label),
            ),
        )
        self._targets[label] = state
        if len(self._targets) > _MAX_TARGET_STATES:
            self._forget_idle()
        return state

    def breaker_states(self) -> dict[str, State]:
        """The state of every target's breaker seen so far (for health and metrics)."""
        return {label: state.breaker.state for label, state in self._targets.items()}

    # -- serving -------------------------------------------------------------------------------
    async def rerank(
        self,
        query: RerankQuery,
        *,
        deadline: float,
        headers: Mapping[str, str] | None = None,
        on_partial: PartialSink | None = None,
    ) -> Ranked:
        """Serve `query` before `deadline` (a time.monotonic() value). `on_partial`, when given,
        receives each finished chunk's scores (indices into the whole request) as they come."""
        name = query.model or DEFAULT_ALIAS
        targets = self.resolve(name)
        policy = self.policy(name)
        key = None
        if policy.cache is not None:
            key = policy.cache.key(name, query)
            hit = policy.cache.get(key)
            self.events.emit("cache", route=name, result="hit" if hit else "miss")
            if hit is not None:
                return hit
        async with self.server_limit.slot(self._wait(deadline)):
            ranked = await self._run(name, targets, policy, query, deadline, headers or {}, on_partial)
        if policy.cache is not None and key is not None:
            policy.cache.put(key, ranked)
            ranked.cache = "miss"
        return ranked

    async def _run(
        self,
        name: str,
        targets: Sequence[Target],
        policy: RoutePolicy,
        query: RerankQuery,
        deadline: float,
        headers: Mapping[str, str],
        on_partial: PartialSink | None,
    ) -> Ranked:
        attempts: list[Attempt] = []
        failures: list[errors.RerankError] = []
        previous: Target | None = None
        for target in targets:
            if deadline - self._clock() < MIN_ATTEMPT_S:
                break
            if previous is not None:
                self.events.emit("fallback", route=name, from_target=previous.label, to_target=target.label)
            previous = target
            try:
                result = await self._on_target(target, policy, query, deadline, headers, attempts, on_partial)
            except errors.RerankError as exc:
                if classify(exc) is Disposition.FATAL:
                    raise
                failures.append(exc)
                continue
            return Ranked(
                _rank(result.scores, query.top_n), result.usage, target.provider.name, result.model, attempts
            )
        raise self._final_error(failures, attempts, deadline)

    def _final_error(
        self, failures: Sequence[errors.RerankError], attempts: Sequence[Attempt], deadline: float
    ) -> errors.RerankError:
        """What to report when no target answered: the deadline, else the most useful failure."""
        if not failures or deadline - self._clock() < MIN_ATTEMPT_S:
            provider = failures[-1].provider if failures else ""
            return errors.DeadlineExceeded(
                f"deadline exceeded after {len(attempts)} attempt(s)", provider=provider
            )
        retryable = [f for f in failures if f.retryable]
        return retryable[-1] if retryable else failures[-1]

    async def _on_target(
        self,
        target: Target,
        policy: RoutePolicy,
        query: RerankQuery,
        deadline: float,
        headers: Mapping[str, str],
        attempts: list[Attempt],
        on_partial: PartialSink | None,
    ) -> ProviderResult:
        """Every document scored on `target` (chunked when needed), or the error that ended it."""
        state = self.target_state(target)
        permit = state.breaker.try_acquire()
        if permit is None:
            refusal = state.breaker.refusal()
            attempts.append(_record(target, refusal, 0.0, 1))
            raise refusal
        try:
            limit = target.provider.capabilities(target.model).max_documents
            documents = query.documents
            chunked = limit is not None and len(documents) > limit
            call = ProviderCall(
                model=target.model,
                query=query.query,
                documents=documents,
                top_n=None if chunked else query.top_n,
                rank_fields=query.rank_fields,
                truncation=query.truncation,
                max_tokens_per_doc=query.max_tokens_per_doc,
                parameters=query.parameters,
                headers=headers,
                metadata=query.metadata,
                request_id=query.request_id,
            )
            if not chunked:
                return await self._call(target, state, permit, policy, call, deadline, attempts, "")
            assert limit is not None
            return await self._chunked(
                target, state, permit, policy, call, deadline, attempts, limit, on_partial
            )
        finally:
            state.breaker.release(permit)

    async def _chunked(
        self,
        target: Target,
        state: TargetState,
        permit: Permit,
        policy: RoutePolicy,
        call: ProviderCall,
        deadline: float,
        attempts: list[Attempt],
        limit: int,
        on_partial: PartialSink | None,
    ) -> ProviderResult:
        gate = asyncio.Semaphore(policy.chunk_concurrency)
        starts = range(0, len(call.documents), limit)
        count = len(starts)

        async def one(number: int, start: int) -> ProviderResult:
            part = replace(call, documents=call.documents[start : start + limit])
            async with gate:
                result = await self._call(
                    target, state, permit, policy, part, deadline, attempts, f"chunk {number}/{count}: "
                )
            shifted = ProviderResult(
                [Scored(s.index + start, s.score) for s in result.scores], result.usage, result.model
            )
            if on_partial is not None:
                on_partial(shifted.scores)
            return shifted

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(n, start)) for n, start in enumerate(starts, 1)]
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        usage = Usage()
        scores: list[Scored] = []
        for task in tasks:
            usage.add(task.result().usage)
            scores.extend(task.result().scores)
        return ProviderResult(scores, usage, tasks[0].result().model)

    async def _call(
        self,
        target: Target,
        state: TargetState,
        permit: Permit,
        policy: RoutePolicy,
        call: ProviderCall,
        deadline: float,
        attempts: list[Attempt],
        prefix: str,
    ) -> ProviderResult:
        """One provider call, retried on retryable failures while attempts and time are left."""
        attempt = 0
        while True:
            attempt += 1
            if not state.breaker.allows(permit):
                refusal = state.breaker.refusal()
                attempts.append(_record(target, refusal, 0.0, attempt, prefix))
                raise refusal
            remaining = deadline - self._clock()
            if remaining < MIN_ATTEMPT_S:
                raise errors.DeadlineExceeded(
                    f"{target.provider.name}: deadline reached", provider=target.provider.name
                )
            started = time.perf_counter()
            cut_by_deadline = False
            try:
                async with state.limit.slot(min(self.queue_timeout_s, remaining - MIN_ATTEMPT_S)):
                    timeout, cut_by_deadline = self._attempt_timeout(target, policy, deadline)
                    result = await self._send(target, call, timeout, attempt)
            except errors.RerankError as raw:
                exc = normalise(raw)
                elapsed = time.perf_counter() - started
                # A timeout the caller's deadline imposed says nothing about the target's health.
                impatient = cut_by_deadline and isinstance(exc, errors.DeadlineExceeded)
                state.breaker.record(permit, None if impatient else breaker_verdict(exc))
                delay = retry_delay(policy.retry, attempt, exc, self._rng, deadline - self._clock())
                note = "" if delay is None else f" (retry in {delay * 1000:.0f} ms)"
                attempts.append(_record(target, exc, elapsed, attempt, prefix, note))
                if delay is None:
                    raise exc from None
                self.events.emit("retry", target=target.label, code=exc.code.name)
                await asyncio.sleep(delay)
                continue
            attempts.append(_record(target, None, time.perf_counter() - started, attempt, prefix))
            state.breaker.record(permit, True)
            return result

    def _attempt_timeout(self, target: Target, policy: RoutePolicy, deadline: float) -> tuple[float, bool]:
        """This attempt's timeout, and whether the caller's deadline (not a configured limit) set it."""
        remaining = max(deadline - self._clock(), 0.0)
        configured = min(target.provider.timeout_s or math.inf, policy.retry.attempt_timeout_s or math.inf)
        return min(remaining, configured), remaining <= configured

    async def _send(self, target: Target, call: ProviderCall, timeout: float, attempt: int) -> ProviderResult:
        """One attempt under its own CLIENT span; the provider sees that span as its parent."""
        name = target.provider.name
        attributes = (
            {
                "rerankd.provider": name,
                "rerankd.provider_kind": target.provider.kind,
                "rerankd.model": target.model,
                "rerankd.documents": len(call.documents),
                "rerankd.attempt": attempt,
            }
            if tracing.recording()
            else tracing.NO_ATTRIBUTES
        )
        started = time.perf_counter()
        outcome = "OK"
        with tracing.child_span("rerankd.provider_attempt", attributes, SpanKind.CLIENT) as span:
            headers = tracing.inject(call.headers, span)
            forwarded = _forwarded_metadata(target.provider.forward_metadata, call.metadata)
            if forwarded:
                headers["x-metadata"] = forwarded
            try:
                async with asyncio.timeout(timeout):
                    result = await target.provider.rerank(replace(call, timeout=timeout, headers=headers))
                _check_answer(name, call, result.scores)
            except TimeoutError:
                outcome = "DEADLINE_EXCEEDED"
                raise errors.DeadlineExceeded(
                    f"{name}: no answer within {timeout:.3f}s", provider=name
                ) from None
            except errors.RerankError as exc:
                outcome = exc.code.name
                raise
            except asyncio.CancelledError:
                outcome = "CANCELLED"
                raise
            finally:
                span.set_attribute("rerankd.outcome", outcome)
                if outcome != "OK":
                    span.set_status(Status(StatusCode.ERROR, outcome))
                model = metrics.attempt_model_label(target.label, target.model)  # ad-hoc: "other"
                metrics.child(metrics.ATTEMPTS, name, model, outcome).inc()
                metrics.child(metrics.ATTEMPT_SECONDS, name).observe(time.perf_counter() - started)
        metrics.child(metrics.DOCUMENTS, name).inc(len(call.documents))
        return result

    def _wait(self, deadline: float) -> float:
        return max(min(self.queue_timeout_s, deadline - self._clock() - MIN_ATTEMPT_S), 0.0)

    def _transition(self, label: str, old: State, new: State) -> None:
        log = _LOG.warning if new is State.OPEN else _LOG.info
        log("circuit %s: %s -> %s", label, old.value, new.value)
        self.events.emit("breaker", target=label, from_state=old.value, to_state=new.value)

    def _forget_idle(self) -> None:
        for label, state in list(self._targets.items()):
            if len(self._targets) <= _MAX_TARGET_STATES // 2:
                break
            idle = state.limit.in_flight == 0 and state.limit.waiting == 0
            if idle and state.breaker.state is State.CLOSED:
                del self._targets[label]


# Where a streaming caller that asked for `progressive` results wants each finished chunk's scores
# (indices into the whole request): a parameter of Router.rerank, passed down to the chunks.
PartialSink = Callable[[list[Scored]], None]


def _forwarded_metadata(allowed: Sequence[str], metadata: Mapping[str, str]) -> str:
    """The caller metadata a provider may see (its allow-list; "*" = all), as a JSON object."""
    if not allowed or not metadata:
        return ""
    kept = dict(metadata) if "*" in allowed else {k: v for k, v in metadata.items() if k in allowed}
    return json.dumps(kept, separators=(",", ":")) if kept else ""  # ASCII: a header value


def _check_answer(provider: str, call: ProviderCall, scores: list[Scored]) -> None:
    """Refuse an answer that is not one score per document asked for (BadResponse, so retried
    and failed over): an index twice or outside the documents sent, or fewer results than every
    document (top_n unset, as for each chunk) or min(top_n, documents). More than top_n is fine
    (the local model scores every document; the router cuts to top_n after the merge). Three
    C-level passes over the indices (about 10 us for 1,000); scores are checked by the parsers."""
    count = len(call.documents)
    indices = set(map(_BY_INDEX, scores))
    if len(indices) != len(scores):
        raise BadResponse(f"{provider}: answer scores a document twice", provider=provider)
    if indices and (min(indices) < 0 or max(indices) >= count):
        raise BadResponse(
            f"{provider}: answer has a result outside the {count} documents sent", provider=provider
        )
    wanted = count if call.top_n is None else min(call.top_n, count)
    if len(indices) < wanted:
        raise BadResponse(
            f"{provider}: answer has {len(indices)} results for {count} documents ({wanted} expected)",
            provider=provider,
        )


def _rank(scores: list[Scored], top_n: int | None) -> list[Scored]:
    """Best first; equal scores in document order. Two stable sorts on C-level keys (no Python
    call per item): by index, then by score descending, which keeps equal scores in index order."""
    ranked = sorted(scores, key=_BY_INDEX)
    ranked.sort(key=_BY_SCORE, reverse=True)
    return ranked[:top_n] if top_n else ranked


_BY_INDEX = operator.attrgetter("index")
_BY_SCORE = operator.attrgetter("score")


def _record(
    target: Target,
    error: errors.RerankError | None,
    elapsed_s: float,
    attempt: int,
    prefix: str = "",
    note: str = "",
) -> Attempt:
    """An attempt's record; a failure's message is `prefix` + the error + `note` (the retry wait)."""
    return Attempt(
        provider=target.provider.name,
        model=target.model,
        outcome="OK" if error is None else error.code.name,
        duration_ms=elapsed_s * 1000.0,
        attempt=attempt,
        message="" if error is None else errors.scrub(prefix + str(error))[: 300 - len(note)] + note,
    )


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a failed chunk group: a caller error first, else the first one."""
    leaves: list[BaseException] = []

    def walk(item: BaseException) -> None:
        if isinstance(item, BaseExceptionGroup):
            for inner in item.exceptions:
                walk(inner)
        else:
            leaves.append(item)

    walk(group)
    for leaf in leaves:
        if isinstance(leaf, errors.RerankError) and classify(leaf) is Disposition.FATAL:
            return leaf
    return leaves[0]
