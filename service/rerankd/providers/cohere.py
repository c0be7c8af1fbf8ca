"""Cohere rerank: `POST {base_url}/v2/rerank` (default) or `/v1/rerank`, by `options.api_version`.

v2 takes strings only, so rank_fields are rendered into the text (domain.render_text), and it has
max_tokens_per_doc. v1 takes objects, so rank_fields are native there; it has no
max_tokens_per_doc (refused). Neither API can refuse over-long documents (v2 truncates, v1
chunks), so truncation NONE is refused. We never ask Cohere to echo documents. Usage is
meta.billed_units.search_units; Cohere does not name the model in its answer. base_url is the host
(https://api.cohere.com); a pasted endpoint ending in /v1/rerank or /v2/rerank also selects that
version. Cohere deployments on Azure AI reuse all of this (providers/azure.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.domain import Truncation, Usage
from rerankd.providers.base import Capabilities, ProviderCall, ProviderResult
from rerankd.providers.http import HttpClient, HttpProvider, HttpReply, HttpRequest, encode_json
from rerankd.providers.jsonwire import (
    count_at,
    error_text,
    field_object,
    json_object,
    scores,
    texts,
    top_n,
    unsupported,
    with_parameters,
)

API_VERSIONS = ("v1", "v2")
MAX_DOCUMENTS = 1_000  # the SDK recommends at most 1,000 documents per request
_RESERVED = frozenset({"model", "query", "documents", "top_n", "max_tokens_per_doc", "rank_fields"})
_ENDPOINT = re.compile(r"/(v[12])/rerank/*$")


def split_base_url(url: str) -> tuple[str, str | None]:
    """`url` without a trailing /v1/rerank or /v2/rerank, and that version (None when absent)."""
    match = _ENDPOINT.search(url)
    if match is None:
        return url.rstrip("/"), None
    return url[: match.start()], match.group(1)


def resolve_version(provider: str, options: Mapping[str, Any], from_url: str | None) -> str:
    """The API version from options.api_version ("v1" | "v2"), else the URL, else v2."""
    raw = options.get("api_version")
    version = None if raw is None else str(raw).lower()
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


def capabilities(version: str) -> Capabilities:
    native = version == "v1"
    return Capabilities(max_documents=MAX_DOCUMENTS, object_documents=native, native_rank_fields=native)


def build_body(provider: str, call: ProviderCall, version: str) -> dict[str, Any]:
    """The JSON body of `POST /{version}/rerank` for `call` (pure)."""
    if call.truncation is Truncation.NONE:
        raise unsupported(provider, "truncation", "Cohere shortens long documents itself")
    body: dict[str, Any] = {"model": call.model, "query": call.query}
    if version == "v2":
        body["documents"] = texts(call)
        if call.max_tokens_per_doc is not None:
            body["max_tokens_per_doc"] = call.max_tokens_per_doc
    else:
        if call.max_tokens_per_doc is not None:
            raise unsupported(provider, "max_tokens_per_doc", "the v1 API has no such field (use v2)")
        if call.rank_fields:
            body["documents"] = [field_object(doc, call.rank_fields) for doc in call.documents]
            body["rank_fields"] = list(call.rank_fields)
        else:
            body["documents"] = [doc.text for doc in call.documents]
        body["return_documents"] = False
    n = top_n(call)
    if n is not None:
        body["top_n"] = n
    return with_parameters(provider, body, call.parameters, _RESERVED)


def parse_body(provider: str, call: ProviderCall, body: Any) -> ProviderResult:
    """Scores and billed search units from a Cohere v1/v2 answer (pure)."""
    body = json_object(provider, body)
    usage = Usage(
        search_units=count_at(body, "meta", "billed_units", "search_units"), documents=len(call.documents)
    )
    return ProviderResult(scores(provider, body.get("results"), len(call.documents)), usage, call.model)


class CohereProvider(HttpProvider):
    """Cohere's hosted rerank models (rerank-v3.5, rerank-v4.0-pro, rerank-english-v3.0, ...)."""

    kind = "cohere"
    default_base_url = "https://api.cohere.com"

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient) -> None:
        super().__init__(name, config, http)
        self.base_url, from_url = split_base_url(self.base_url)
        self.api_version = resolve_version(name, config.options, from_url)

    def capabilities(self, model: str) -> Capabilities:
        return capabilities(self.api_version)

    def build_request(self, call: ProviderCall) -> HttpRequest:
        body = build_body(self.name, call, self.api_version)
        headers = self.json_headers(call, self.bearer())
        return HttpRequest("POST", f"{self.base_url}/{self.api_version}/rerank", headers, encode_json(body))

    def parse_response(self, call: ProviderCall, reply: HttpReply) -> ProviderResult:
        return parse_body(self.name, call, reply.json())

    def error_message(self, reply: HttpReply) -> str:
        """Cohere errors are {"message": ...}; tolerate {"error": {"message"}} and {"detail"}."""
        return error_text(reply, ("message", "error", "detail")) or super().error_message(reply)
