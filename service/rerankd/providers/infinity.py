"""Infinity (michaelfeil/infinity) rerank: `POST {base_url}/rerank` (`--url-prefix` goes in base_url).

Verified in its source (infinity_emb fastapi_schemas/pymodels.py RerankInput and ReRankResult,
infinity_server.py `_rerank`, HEAD fcb951c): the request is {query, documents: [str],
return_documents, raw_scores, model, top_n (> 0)}; documents are 1..2048 strings
(INFINITY_MAX_CLIENT_BATCH_SIZE: the option `max_client_batch_size`, the router chunks longer
lists); the answer {object: "rerank", results[{relevance_score, index, document: null}], model,
usage{prompt_tokens, total_tokens}, id, created}, best first; with one model loaded any `model`
is accepted. Scores are sigmoid-activated unless `raw_scores` (sent false; `parameters` may set
it). Infinity truncates each pair to the model's length itself ("longest_first"), so truncation
NONE is refused; there is no max_tokens_per_doc. Errors: {"error": {"message", ...}} with the
status, FastAPI's 422 {"detail": [...]} for bad input, 401 {"detail": "Unauthorized"} for a wrong
`--api-key` (a bearer token, optional).
"""

from __future__ import annotations

from pydantic import Field

from rerankd.config import ProviderConfig, ProviderOptions
from rerankd.providers.http import HttpClient
from rerankd.providers.jsonspec import JsonProvider, JsonSpec


class InfinityOptions(ProviderOptions):
    max_client_batch_size: int = Field(2048, ge=1)  # the server's INFINITY_MAX_CLIENT_BATCH_SIZE


class InfinityProvider(JsonProvider):
    """An Infinity server with a reranker loaded (e.g. mixedbread-ai/mxbai-rerank-xsmall-v1)."""

    kind = "infinity"
    Options = InfinityOptions
    spec = JsonSpec(
        path="/rerank",
        auth="optional-bearer",
        fixed={"return_documents": False},
        defaults={"raw_scores": False},
        truncate_why="Infinity cuts each pair to the model's length itself",
        error_keys=("error", "detail", "message"),
    )

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient) -> None:
        super().__init__(name, config, http)
        self.max_documents = self.options.max_client_batch_size
