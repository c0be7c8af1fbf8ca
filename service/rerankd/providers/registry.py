"""Provider kinds by name: the one line to add when a provider module is added.

Values are "module:Class" strings so a kind's module (and its dependencies) is imported only when
a configuration uses it. A kind's typed options are its class's `Options` model
(config.ProviderConfig checks them through `options_model`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from rerankd import errors
from rerankd.config import ProviderConfig, ProviderOptions, Settings
from rerankd.passages import Passages
from rerankd.providers.base import Provider
from rerankd.providers.http import HttpClient
from rerankd.providers.passages import PassageProvider

REGISTRY: dict[str, str] = {
    "local": "rerankd.local.provider:LocalProvider",
    "cohere": "rerankd.providers.cohere:CohereProvider",
    "voyage": "rerankd.providers.voyage:VoyageProvider",
    "jina": "rerankd.providers.jina:JinaProvider",
    "pinecone": "rerankd.providers.pinecone:PineconeProvider",
    "bedrock": "rerankd.providers.bedrock:BedrockProvider",
    "azure": "rerankd.providers.azure:AzureProvider",
    "tei": "rerankd.providers.tei:TeiProvider",
    "vllm": "rerankd.providers.vllm:VllmProvider",
    "infinity": "rerankd.providers.infinity:InfinityProvider",
    "llamacpp": "rerankd.providers.llamacpp:LlamaCppProvider",
    "mixedbread": "rerankd.providers.mixedbread:MixedbreadProvider",
    "nim": "rerankd.providers.nim:NimProvider",
}


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a provider may need at construction: settings and the shared HTTP client."""

    settings: Settings
    http: HttpClient


def provider_class(kind: str) -> Any:
    """The class of `kind` (its module imported now); InvalidArgument for an unknown kind."""
    target = REGISTRY.get(kind)
    if target is None:
        known = ", ".join(sorted(REGISTRY))
        raise errors.InvalidArgument(f"unknown kind {kind!r} (known: {known})")
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def options_model(kind: str) -> type[ProviderOptions]:
    """The pydantic model `options` of `kind` must fit (an empty one when the kind has none)."""
    model: type[ProviderOptions] = getattr(provider_class(kind), "Options", ProviderOptions)
    return model


def create_provider(name: str, config: ProviderConfig, ctx: ProviderContext) -> Provider:
    """Instantiate provider `name` of `config.kind`, complete: nothing is set on it afterwards.
    Hosted kinds come wrapped in a PassageProvider (long documents as passages,
    rerankd.providers.passages)."""
    try:
        cls = provider_class(config.kind)
    except errors.InvalidArgument as exc:
        raise errors.InvalidArgument(f"provider {name!r}: {exc}") from None
    provider: Provider = cls.create(name, config, ctx)
    if config.kind == "local":  # the embedded model splits with its own tokenizer
        return provider
    try:
        passages = Passages.parse(config.options.passages)
    except ValueError as exc:
        raise ValueError(f"provider {name!r}: options.passages {exc}") from None
    return PassageProvider(provider, passages)
