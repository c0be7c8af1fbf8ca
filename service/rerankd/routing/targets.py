"""Model names to targets: route aliases, provider models, "provider/model" and `match` patterns.

A name resolves to an ordered list of targets: a route alias from the config, a model a provider
serves under its own name, an explicit "provider/model", or, last, a route whose `match` patterns
(globs such as `rerank-*`) the name fits, in config order (the drop-in names: docs/http-api.md).
Targets are ordered by priority, with a weighted shuffle among equal priorities. `entries()` is
what ListModels lists.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rerankd import errors
from rerankd.config import DEFAULT_ALIAS
from rerankd.providers.base import Provider


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
    match: Sequence[str] = ()  # the name patterns the alias also answers (a route's `match`)


class ModelNames:
    """The names this server answers and the targets behind each."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        routes: Mapping[str, Sequence[Target]],
        patterns: Sequence[tuple[str, str]] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.providers = dict(providers)
        self.routes = {name: list(targets) for name, targets in routes.items()}
        # (glob pattern, route alias) in config order: names no alias or provider serves
        self.patterns = [(pattern, alias) for pattern, alias in patterns if alias in self.routes]
        self.direct: dict[str, list[Target]] = {}
        for provider in self.providers.values():
            for model in provider.models():
                self.direct.setdefault(model, [Target(provider, model)])
        self._rng = rng or random.Random()

    def labels(self) -> list[str]:
        """Every configured target's label (the bounded metric label values)."""
        return [t.label for named in (self.routes, self.direct) for ts in named.values() for t in ts]

    def entries(self) -> list[ModelEntry]:
        """Names for ListModels; each alias's targets in fallback (priority) order."""
        listed = [
            ModelEntry(
                name,
                True,
                sorted(targets, key=lambda t: t.priority),
                [pattern for pattern, alias in self.patterns if alias == name],
            )
            for name, targets in sorted(self.routes.items())
        ]
        listed += [
            ModelEntry(name, False, targets)
            for name, targets in sorted(self.direct.items())
            if name not in self.routes
        ]
        return listed

    def resolve(self, name: str) -> list[Target]:
        """Targets for `name` in the order they will be tried; NotFound lists the known names."""
        name = name or DEFAULT_ALIAS
        targets = self.routes.get(name) or self.direct.get(name)
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
        return self.order(targets)

    def matched_route(self, name: str) -> str:
        """The alias of the first route whose `match` patterns `name` fits ("" when none), for names
        that are not an alias, a served model name or provider/model."""
        if name in self.routes or name in self.direct:
            return ""
        for pattern, alias in self.patterns:
            if fnmatch.fnmatchcase(name, pattern):
                return alias
        return ""

    def order(self, targets: Sequence[Target]) -> list[Target]:
        """Priority order; a weighted shuffle among targets of equal priority."""
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
