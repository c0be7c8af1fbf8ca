"""Pinecone Inference rerank: `POST {base_url}/rerank` with an `Api-Key` and a dated API version.

Documents go as objects: a plain document becomes {"id", "text"}, a document with fields keeps
them (so `rank_fields` is native here: the `body` hook). We never ask Pinecone to echo documents:
the service fills them in itself. Unified truncation becomes `parameters.truncate` (END | NONE)
unless the caller's `parameters` already name it; `max_tokens_per_doc` has no Pinecone field and
is refused. Usage is `usage.rerank_units`. Errors: {"error": {"code": "INVALID_ARGUMENT", "message":
...}, "status": 400}. Keys look like `pcsk_...`. Options: `api_version` (the
`X-Pinecone-Api-Version` header, default "2025-10").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rerankd.config import ProviderOptions
from rerankd.domain import Document
from rerankd.providers.base import Capabilities, ProviderCall
from rerankd.providers.jsonspec import JsonProvider, JsonSpec
from rerankd.providers.jsonwire import top_n, unsupported

DEFAULT_API_VERSION = "2025-10"

# Per-model limits: cohere-rerank-3.5 is documented (docs.pinecone.io guides/inference/rerank:
# 200 documents, 40,000 tokens per query + document). UNVERIFIED: 100 documents for every other
# model, and the pair limits of bge-reranker-v2-m3 (1024) and pinecone-rerank-v0 (512).
_MAX_DOCUMENTS = {"cohere-rerank-3.5": 200}
_DEFAULT_MAX_DOCUMENTS = 100
_MAX_TOKENS = {"cohere-rerank-3.5": 40_000, "bge-reranker-v2-m3": 1024, "pinecone-rerank-v0": 512}


class PineconeOptions(ProviderOptions):
    api_version: str = DEFAULT_API_VERSION  # the X-Pinecone-Api-Version header


class PineconeProvider(JsonProvider):
    """Pinecone's hosted rerank models (bge-reranker-v2-m3, pinecone-rerank-v0, cohere-rerank-3.5)."""

    kind = "pinecone"
    Options = PineconeOptions
    spec = JsonSpec(
        path="/rerank",
        default_base_url="https://api.pinecone.io",
        results="data",
        score="score",
        usage=("usage", "rerank_units"),
        usage_unit="rerank_units",
        error_keys=("error", "message"),
        error_kind=("error", "code"),
        key_prefixes=("pcsk",),
        object_documents=True,
    )

    @property
    def api_version(self) -> str:
        return str(self.options.api_version)

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(
            max_documents=_MAX_DOCUMENTS.get(model, _DEFAULT_MAX_DOCUMENTS),
            max_tokens=_MAX_TOKENS.get(model),
            object_documents=True,
            native_rank_fields=True,
        )

    def auth_headers(self) -> Mapping[str, str]:
        return {"api-key": self.api_key, "x-pinecone-api-version": self.api_version}

    def body(self, call: ProviderCall) -> dict[str, Any]:
        if call.max_tokens_per_doc is not None:
            raise unsupported(self.name, "max_tokens_per_doc", "Pinecone has no such field (use truncation)")
        parameters: dict[str, Any] = dict(call.parameters)
        # Per-model support of `truncate` on rerankers is UNVERIFIED (documented for embed models).
        parameters.setdefault("truncate", call.truncation.value)
        body: dict[str, Any] = {
            "model": call.model,
            "query": call.query,
            "documents": [_document(doc, i) for i, doc in enumerate(call.documents)],
            "return_documents": False,
            "parameters": parameters,
        }
        n = top_n(call)
        if n is not None:
            body["top_n"] = n
        if call.rank_fields:
            body["rank_fields"] = list(call.rank_fields)
        return body


def _document(doc: Document, position: int) -> dict[str, str]:
    """The wire object for one document: id and text, then the caller's own fields (which win)."""
    wire = {"id": doc.id or str(position)}
    if doc.text or not doc.fields:
        wire["text"] = doc.text
    wire.update(doc.fields)
    return wire
