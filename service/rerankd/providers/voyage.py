"""Voyage AI rerank: `POST {base_url}/rerank`, base_url ending in /v1 (https://api.voyageai.com/v1).

Strings only (rank_fields rendered by domain.render_text), at most 1,000 per call; top_n is sent as
`top_k`; truncation END/NONE becomes `truncation` true/false; Voyage has no max_tokens_per_doc
(refused). We never ask for documents back. Usage is `usage.total_tokens`; the answer names the
model. Errors are {"detail": ...} (a string, or FastAPI's list for 422). Keys look like `pa-...`.
As in the official SDK, a MongoDB Atlas key (`al-...`) defaults to https://ai.mongodb.com/v1.
"""

from __future__ import annotations

from rerankd.config import ProviderConfig
from rerankd.providers.base import Capabilities
from rerankd.providers.http import HttpClient
from rerankd.providers.jsonspec import JsonProvider, JsonSpec, Truncate

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


class VoyageProvider(JsonProvider):
    """Voyage's rerank models (rerank-2.5, rerank-2.5-lite, rerank-2, ...)."""

    kind = "voyage"
    spec = JsonSpec(
        path="/rerank",
        default_base_url="https://api.voyageai.com/v1",
        top_n="top_k",
        truncate=Truncate("truncation", end=True, none=False),
        max_tokens_why="Voyage has no such field (use truncation)",
        fixed={"return_documents": False},
        results="data",
        key_prefixes=("pa", "al"),
        max_documents=MAX_DOCUMENTS,
    )

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient) -> None:
        super().__init__(name, config, http)
        key = self._api_key.get_secret_value() if self._api_key is not None else ""
        if not config.base_url and key.startswith("al-"):
            self.base_url = ATLAS_BASE_URL
            self.configure(self.spec)

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(max_documents=MAX_DOCUMENTS, max_tokens=MAX_PAIR_TOKENS.get(model))
