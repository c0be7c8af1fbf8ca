"""Model names to provider targets, and the path of one request through them.

A name resolves to an ordered list of targets: a route alias from the config, a model a provider
serves under its own name, or an explicit "provider/model". Targets are tried in priority order
(weighted shuffle among equal priorities); a retryable failure falls over to the next target, a
caller error (INVALID_ARGUMENT) is returned at once. Every attempt gets a timeout inside the
caller's remaining deadline. Lists longer than a target's `max_documents` are split into chunks
scored concurrently (bounded), merged by score, and `top_n` is applied after the merge.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from rerankd import errors
from rerankd.config import DEFAULT_ALIAS, LOCAL_PROVIDER, RouteConfig
from rerankd.domain import Attempt, Ranked, RerankQuery, Scored, Usage
from rerankd.providers.base import Provider, ProviderCall, ProviderResult

_MIN_ATTEMPT_S = 0.005  # below this, an attempt cannot succeed: fail with DEADLINE_EXCEEDED


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


class Router:
    """Resolves names and runs requests across targets with fallbacks, deadlines and chunking."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        routes: Mapping[str, Sequence[Target]],
        *,
        max_chunk_concurrency: int = 8,
        rng: random.Random | None = None,
    ) -> None:
        self.providers = dict(providers)
        self.routes = {name: list(targets) for name, targets in routes.items()}
        self.max_chunk_concurrency = max_chunk_concurrency
        self._rng = rng or random.Random()
        self._direct: dict[str, list[Target]] = {}
        for provider in self.providers.values():
            for model in provider.models():
                self._direct.setdefault(model, [Target(provider, model)])

    @classmethod
    def from_config(cls, providers: Mapping[str, Provider], routes: Mapping[str, RouteConfig]) -> Router:
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
        return cls(providers, built)

    def entries(self) -> list[ModelEntry]:
        listed = [ModelEntry(name, True, targets) for name, targets in sorted(self.routes.items())]
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
            known = ", ".join(entry.name for entry in self.entries())
            raise errors.NotFound(
                f"model {name!r} is not served here; known: {known} (or provider/model)",
                field_violations=[("model", f"unknown model {name!r}")],
            )
        return self._order(targets)

    def _order(self, targets: Sequence[Target]) -> list[Target]:
        ordered: list[Target] = []
        for priority in sorted({t.priority for t in targets}):
            group = [t for t in targets if t.priority == priority]
            while group:
                weights = [max(t.weight, 0) for t in group]
                pick = self._rng.choices(group, weights=weights)[0] if sum(weights) > 0 else group[0]
                ordered.append(pick)
                group.remove(pick)
        return ordered

    async def rerank(
        self, query: RerankQuery, *, deadline: float, headers: Mapping[str, str] | None = None
    ) -> Ranked:
        """Serve `query` before `deadline` (a time.monotonic() value)."""
        attempts: list[Attempt] = []
        last: errors.RerankError | None = None
        for target in self.resolve(query.model):
            remaining = deadline - time.monotonic()
            if remaining < _MIN_ATTEMPT_S:
                break
            started = time.perf_counter()
            try:
                result = await self._attempt(target, query, deadline, headers or {})
            except errors.RerankError as exc:
                attempts.append(_attempt_record(target, exc.code.name, started, str(exc)))
                last = exc
                if not (exc.retryable or isinstance(exc, errors.ProviderMisconfigured)):
                    raise
                continue
            attempts.append(_attempt_record(target, "OK", started, ""))
            return Ranked(
                _rank(result.scores, query.top_n), result.usage, target.provider.name, result.model, attempts
            )
        if last is None or time.monotonic() >= deadline - _MIN_ATTEMPT_S:
            raise errors.DeadlineExceeded(
                f"deadline exceeded after {len(attempts)} attempt(s)", provider=last.provider if last else ""
            )
        raise last

    async def _attempt(
        self, target: Target, query: RerankQuery, deadline: float, headers: Mapping[str, str]
    ) -> ProviderResult:
        provider_timeout = getattr(target.provider, "timeout_s", None)
        remaining = deadline - time.monotonic()
        timeout = min(remaining, provider_timeout) if provider_timeout else remaining
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
            timeout=timeout,
            headers=headers,
            metadata=query.metadata,
            request_id=query.request_id,
        )
        try:
            async with asyncio.timeout(timeout):
                if not chunked:
                    return await target.provider.rerank(call)
                assert limit is not None
                return await self._chunked(target.provider, call, limit)
        except TimeoutError:
            raise errors.DeadlineExceeded(
                f"{target.provider.name}: no answer within {timeout:.3f}s", provider=target.provider.name
            ) from None

    async def _chunked(self, provider: Provider, call: ProviderCall, limit: int) -> ProviderResult:
        gate = asyncio.Semaphore(self.max_chunk_concurrency)

        async def one(start: int) -> ProviderResult:
            async with gate:
                result = await provider.rerank(replace(call, documents=call.documents[start : start + limit]))
            return ProviderResult(
                [Scored(s.index + start, s.score) for s in result.scores], result.usage, result.model
            )

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(start)) for start in range(0, len(call.documents), limit)]
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        usage = Usage()
        scores: list[Scored] = []
        for task in tasks:
            usage.add(task.result().usage)
            scores.extend(task.result().scores)
        return ProviderResult(scores, usage, tasks[0].result().model)


def _rank(scores: list[Scored], top_n: int | None) -> list[Scored]:
    ranked = sorted(scores, key=lambda s: (-s.score, s.index))
    return ranked[:top_n] if top_n else ranked


def _attempt_record(target: Target, outcome: str, started: float, message: str) -> Attempt:
    return Attempt(
        provider=target.provider.name,
        model=target.model,
        outcome=outcome,
        duration_ms=(time.perf_counter() - started) * 1000.0,
        message=errors.scrub(message)[:300],
    )


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first
