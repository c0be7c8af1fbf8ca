"""Cohere rerank: `POST {base_url}/v2/rerank` (default) or `/v1/rerank`, by `options.api_version`.

v2 takes strings only, so rank_fields are rendered into the text (domain.render_text), and it has
max_tokens_per_doc. v1 takes objects, so rank_fields are native there (the one hook: `body`); it
has no max_tokens_per_doc (refused). Neither API can refuse over-long documents (v2 truncates, v1
chunks), so truncation NONE is refused. We never ask Cohere to echo documents. Usage is
meta.billed_units.search_units; Cohere does not name the model in its answer. base_url is the host
(https://api.cohere.com); a pasted endpoint ending in /v1/rerank or /v2/rerank also selects that
version. Cohere deployments on Azure AI reuse all of this (providers/azure.py).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from pydantic import field_validator

from rerankd import errors
from rerankd.config import ProviderConfig, ProviderOptions
from rerankd.providers.base import Capabilities, ProviderCall
from rerankd.providers.http import HttpClient
from rerankd.providers.jsonspec import JsonProvider, JsonSpec
from rerankd.providers.jsonwire import field_object

API_VERSIONS = ("v1", "v2")
MAX_DOCUMENTS = 1_000  # the SDK recommends at most 1,000 documents per request
_ENDPOINT = re.compile(r"/(v[12])/rerank/*$")

V2 = JsonSpec(
    path="/v2/rerank",
    default_base_url="https://api.cohere.com",
    max_tokens_per_doc="max_tokens_per_doc",
    truncate_why="Cohere shortens long documents itself",
    reserved=frozenset({"rank_fields"}),
    usage=("meta", "billed_units", "search_units"),
    usage_unit="search_units",
    answers_model=False,
    error_keys=("message", "error", "detail"),
    max_documents=MAX_DOCUMENTS,
)
V1 = dataclasses.replace(
    V2,
    path="/v1/rerank",
    max_tokens_per_doc=None,
    max_tokens_why="the v1 API has no such field (use v2)",
    fixed={"return_documents": False},
    reserved=frozenset({"rank_fields", "max_tokens_per_doc"}),
    object_documents=True,
)


class CohereOptions(ProviderOptions):
    api_version: str | None = None  # "v1" | "v2" (1 and 2 too); default: the URL's, else v2

    @field_validator("api_version", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


def split_base_url(url: str) -> tuple[str, str | None]:
    """`url` without a trailing /v1/rerank or /v2/rerank, and that version (None when absent)."""
    match = _ENDPOINT.search(url)
    if match is None:
        return url.rstrip("/"), None
    return url[: match.start()], match.group(1)


def resolve_version(provider: str, requested: str | None, from_url: str | None) -> str:
    """The API version from options.api_version ("v1" | "v2"), else the URL, else v2."""
    version = None if requested is None else requested.lower()
    if version in ("1", "2"):
        version = f"v{version}"
    if version is not None and version not in API_VERSIONS:
        message = f"{provider}: options.api_version must be v1 or v2"
        raise errors.ProviderMisconfigured(message, provider=provider)
    if version is not None and from_url is not None and version != from_url:
        raise errors.ProviderMisconfigured(
            f"{provider}: base_url names {from_url} but options.api_version is {version}", provider=provider
        )
    return version or from_url or "v2"


class CohereProvider(JsonProvider):
    """Cohere's hosted rerank models (rerank-v3.5, rerank-v4.0-pro, rerank-english-v3.0, ...)."""

    kind = "cohere"
    Options = CohereOptions
    spec = V2

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient) -> None:
        super().__init__(name, config, http)
        self.base_url, from_url = split_base_url(self.base_url)
        self.api_version = resolve_version(name, self.options.api_version, from_url)
        self.configure(V1 if self.api_version == "v1" else V2)

    def capabilities(self, model: str) -> Capabilities:
        native = self.api_version == "v1"
        return Capabilities(max_documents=MAX_DOCUMENTS, object_documents=native, native_rank_fields=native)

    def body(self, call: ProviderCall) -> dict[str, Any]:
        body = super().body(call)
        if self.api_version == "v1" and call.rank_fields:  # v1 ranks objects on named fields itself
            body["documents"] = [field_object(doc, call.rank_fields) for doc in call.documents]
            body["rank_fields"] = list(call.rank_fields)
        return body
