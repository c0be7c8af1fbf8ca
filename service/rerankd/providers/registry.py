"""Provider kinds by name: the one line to add when a provider module is added.

Values are "module:Class" strings so a kind's module (and its dependencies) is imported only when
a configuration uses it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from rerankd import errors
from rerankd.config import ProviderConfig, Settings
from rerankd.passages import PARAMETER, Passages
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
}


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a provider may need at construction: settings and the shared HTTP client."""

    settings: Settings
    http: HttpClient


def create_provider(name: str, config: ProviderConfig, ctx: ProviderContext) -> Provider:
    """Instantiate provider `name` of `config.kind`; unknown kinds fail at start-up. Hosted kinds
    come wrapped in a PassageProvider (long documents as passages, rerankd.providers.passages)."""
    target = REGISTRY.get(config.kind)
    if target is None:
        known = ", ".join(sorted(REGISTRY))
        raise errors.InvalidArgument(f"provider {name!r}: unknown kind {config.kind!r} (known: {known})")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: Provider = cls.create(name, config, ctx)
    if config.kind == "local":  # the embedded model splits with its own tokenizer
        return provider
    try:
        passages = Passages.parse(config.options.get(PARAMETER))
    except ValueError as exc:
        raise ValueError(f"provider {name!r}: options.passages {exc}") from None
    return PassageProvider(provider, passages)
