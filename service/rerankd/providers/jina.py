"""Jina AI rerank: `POST {base_url}/rerank`, base_url ending in /v1 (https://api.jina.ai/v1).

Documents go as strings (rank_fields rendered by domain.render_text); the model is always sent
(whether Jina requires it is unverified) and `return_documents` is sent as false explicitly (Jina
changed its default). Jina documents no truncation switch and no max_tokens_per_doc, so truncation
NONE and max_tokens_per_doc are refused. Answers may carry `document` as an object or a string;
we ignore it either way. Usage is `usage.total_tokens`; the answer names the model. Errors:
{"detail": ...} (FastAPI style; unverified), else {"message": ...}. Keys look like `jina_...`.
"""

from __future__ import annotations

from rerankd.providers.jsonspec import JsonProvider, JsonSpec


class JinaProvider(JsonProvider):
    """Jina's rerank models (jina-reranker-v3, jina-reranker-v2-base-multilingual, ...)."""

    kind = "jina"
    # Jina publishes no per-call document or token limits we could verify.
    spec = JsonSpec(
        path="/rerank",
        default_base_url="https://api.jina.ai/v1",
        fixed={"return_documents": False},
        truncate_why="its API has no documented way to refuse long documents",
        max_tokens_why="its API has no documented such field",
        key_prefixes=("jina",),
    )
