"""Mixedbread rerank: `POST {base_url}/v1/reranking` (https://api.mixedbread.com).

Verified in the official SDK (mixedbread-ai/mixedbread-python: client_rerank_params.py,
rerank_response.py, _client.py) and the API reference: the request is {model, query, input: [str
or objects], rank_fields, top_k (default -1 = all), return_input, rewrite_query}, at most 1,000
inputs; the answer {usage{prompt_tokens, total_tokens}, model, data[{index, score, input?, object:
"rank_result"}], object: "list", top_k, return_input}, ordered by relevance. Documents go as
strings (rank_fields rendered by domain.render_text); `return_input` is sent false. Auth: a
bearer key. Mixedbread truncates long documents itself, so truncation NONE is refused; there is
no max_tokens_per_doc. UNVERIFIED: the error body (read from "message", then "detail", "error"),
the score range, and the key prefix `mxb_`.
"""

from __future__ import annotations

from rerankd.providers.jsonspec import JsonProvider, JsonSpec


class MixedbreadProvider(JsonProvider):
    """Mixedbread's hosted rerank models (mixedbread-ai/mxbai-rerank-large-v2, ...)."""

    kind = "mixedbread"
    spec = JsonSpec(
        path="/v1/reranking",
        default_base_url="https://api.mixedbread.com",
        documents="input",
        top_n="top_k",
        fixed={"return_input": False},
        truncate_why="Mixedbread shortens long documents itself",
        results="data",
        score="score",
        error_keys=("message", "detail", "error"),
        key_prefixes=("mxb",),
        max_documents=1_000,
    )
