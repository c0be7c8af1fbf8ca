"""Voyage AI rerank: `POST {base_url}/rerank`, base_url ending in /v1 (https://api.voyageai.com/v1).

Strings only (rank_fields rendered by domain.render_text), at most 1,000 per call; top_n is sent as
`top_k`; truncation END/NONE becomes `truncation` true/false; Voyage has no max_tokens_per_doc
(refused). We never ask for documents back. Usage is `usage.total_tokens`; the answer names the
model. As in the official SDK, a MongoDB Atlas key (`al-...`) defaults to https://ai.mongodb.com/v1.
"""

from __future__ import annotations

from typing import Any

from rerankd.config import ProviderConfig
from rerankd.domain import Truncation, Usage
from rerankd.providers.base import Capabilities, ProviderCall, ProviderResult
from rerankd.providers.http import HttpClient, HttpProvider, HttpReply, HttpRequest, encode_json
from rerankd.providers.jsonwire import (
    answered_model,
    count_at,
    error_text,
    json_object,
    scores,
    texts,
    top_n,
    unsupported,
    with_parameters,
)

MAX_DOCUMENTS = 1_000
ATLAS_BASE_URL = "https://ai.mongodb.com/v1"
# Most tokens in one query + document pair, per model (docs.voyageai.com reranker page).
MAX_PAIR_TOKENS = {
    "rerank-2.5": 32_000,
    "rerank-2.5-lite": 32_000,
    "rerank-2": 16_000,
    "rerank-2-lite": 8_000,
    "rerank-1": 8_000,
    "rerank-lite-1": 4_000,
}
_RESERVED = frozenset({"model", "query", "documents", "top_k", "truncation", "return_documents"})


def build_body(provider: str, call: ProviderCall) -> dict[str, Any]:
    """The JSON body of `POST /v1/rerank` for `call` (pure)."""
    if call.max_tokens_per_doc is not None:
        raise unsupported(provider, "max_tokens_per_doc", "Voyage has no such field (use truncation)")
    body: dict[str, Any] = {
        "model": call.model,
        "query": call.query,
        "documents": texts(call),
        "truncation": call.truncation is Truncation.END,
        "return_documents": False,
    }
    n = top_n(call)
    if n is not None:
        body["top_k"] = n
    return with_parameters(provider, body, call.parameters, _RESERVED)


def parse_body(provider: str, call: ProviderCall, body: Any) -> ProviderResult:
    """Scores, total tokens and the answering model from a Voyage answer (pure)."""
    body = json_object(provider, body)
    usage = Usage(total_tokens=count_at(body, "usage", "total_tokens"), documents=len(call.documents))
    results = scores(provider, body.get("data"), len(call.documents))
    return ProviderResult(results, usage, answered_model(body, call))


class VoyageProvider(HttpProvider):
    """Voyage's rerank models (rerank-2.5, rerank-2.5-lite, rerank-2, ...)."""

    kind = "voyage"
    default_base_url = "https://api.voyageai.com/v1"

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient) -> None:
        super().__init__(name, config, http)
        key = self._api_key.get_secret_value() if self._api_key is not None else ""
        if not config.base_url and key.startswith("al-"):
            self.base_url = ATLAS_BASE_URL

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(max_documents=MAX_DOCUMENTS, max_tokens=MAX_PAIR_TOKENS.get(model))

    def build_request(self, call: ProviderCall) -> HttpRequest:
        body = encode_json(build_body(self.name, call))
        headers = self.json_headers(call, self.bearer())
        return HttpRequest("POST", f"{self.base_url}/rerank", headers, body)

    def parse_response(self, call: ProviderCall, reply: HttpReply) -> ProviderResult:
        return parse_body(self.name, call, reply.json())

    def error_message(self, reply: HttpReply) -> str:
        """Voyage errors are {"detail": ...} (a string, or FastAPI's list for 422)."""
        return error_text(reply, ("detail", "message", "error")) or super().error_message(reply)
