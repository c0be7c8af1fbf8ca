"""Jina AI rerank: `POST {base_url}/rerank`, base_url ending in /v1 (https://api.jina.ai/v1).

Documents go as strings (rank_fields rendered by domain.render_text); the model is always sent
(whether Jina requires it is unverified) and `return_documents` is sent as false explicitly (Jina
changed its default). Jina documents no truncation switch and no max_tokens_per_doc, so truncation
NONE and max_tokens_per_doc are refused. Answers may carry `document` as an object or a string;
we ignore it either way. Usage is `usage.total_tokens`; the answer names the model.
"""

from __future__ import annotations

from typing import Any

from rerankd.domain import Truncation, Usage
from rerankd.providers.base import Capabilities, ProviderCall, ProviderResult
from rerankd.providers.http import HttpProvider, HttpReply, HttpRequest, encode_json
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

_RESERVED = frozenset({"model", "query", "documents", "top_n", "return_documents"})


def build_body(provider: str, call: ProviderCall) -> dict[str, Any]:
    """The JSON body of `POST /v1/rerank` for `call` (pure)."""
    if call.truncation is Truncation.NONE:
        raise unsupported(provider, "truncation", "its API has no documented way to refuse long documents")
    if call.max_tokens_per_doc is not None:
        raise unsupported(provider, "max_tokens_per_doc", "its API has no documented such field")
    body: dict[str, Any] = {
        "model": call.model,
        "query": call.query,
        "documents": texts(call),
        "return_documents": False,
    }
    n = top_n(call)
    if n is not None:
        body["top_n"] = n
    return with_parameters(provider, body, call.parameters, _RESERVED)


def parse_body(provider: str, call: ProviderCall, body: Any) -> ProviderResult:
    """Scores, total tokens and the answering model from a Jina answer (pure)."""
    body = json_object(provider, body)
    usage = Usage(total_tokens=count_at(body, "usage", "total_tokens"), documents=len(call.documents))
    return ProviderResult(
        scores(provider, body.get("results"), len(call.documents)), usage, answered_model(body, call)
    )


class JinaProvider(HttpProvider):
    """Jina's rerank models (jina-reranker-v3, jina-reranker-v2-base-multilingual, ...)."""

    kind = "jina"
    default_base_url = "https://api.jina.ai/v1"

    def capabilities(self, model: str) -> Capabilities:
        # Jina publishes no per-call document or token limits we could verify.
        return Capabilities()

    def build_request(self, call: ProviderCall) -> HttpRequest:
        body = encode_json(build_body(self.name, call))
        headers = self.json_headers(call, self.bearer())
        return HttpRequest("POST", f"{self.base_url}/rerank", headers, body)

    def parse_response(self, call: ProviderCall, reply: HttpReply) -> ProviderResult:
        return parse_body(self.name, call, reply.json())

    def error_message(self, reply: HttpReply) -> str:
        """Jina errors: {"detail": ...} (FastAPI style; unverified), else {"message": ...}."""
        return error_text(reply, ("detail", "message", "error")) or super().error_message(reply)
