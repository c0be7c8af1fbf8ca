"""The llama.cpp server's rerank API: `POST {base_url}/v1/rerank` (`llama-server --reranking`).

Verified in ggml-org/llama.cpp tools/server (server.cpp routes, server-context.cpp post_rerank,
server-common.cpp format_response_rerank, README; read through ../shared/engines.md): `/rerank`,
`/reranking`, `/v1/rerank` and `/v1/reranking` are one handler; the request is {model, query,
documents: [str], top_n}; the answer (Jina format) {model, object: "list", usage{prompt_tokens,
total_tokens}, results[{index, relevance_score}]}, best first, cut to top_n. Scores are the rank
head's raw output (a logit): rerankd applies a sigmoid, into (0, 1) as other providers answer,
unless the option `raw_scores` is true. The key (`--api-key`, optional) goes as a bearer token.
Errors: {"error": {"code", "message", "type"}}, written here as "type: message".
llama.cpp has no truncation switch and never truncates: a pair longer than the server's physical
batch (-ub, default 512 tokens) is refused with 500 "input (N tokens) is too large to process"
whichever truncation was asked (raise -ub and -b for long documents); rerankd sends nothing for
truncation and refuses max_tokens_per_doc. UNVERIFIED: the score scale of non-BERT rank heads
(Qwen3 rerankers). No document limit.
"""

from __future__ import annotations

from rerankd.providers.jsonspec import JsonProvider, JsonSpec, RawScoresOptions, Truncate


class LlamaCppProvider(JsonProvider):
    """A llama.cpp server running a GGUF reranker (bge-reranker-v2-m3, jina-reranker-v2, ...)."""

    kind = "llamacpp"
    Options = RawScoresOptions
    spec = JsonSpec(
        path="/v1/rerank",
        auth="optional-bearer",
        truncate=Truncate(),
        error_keys=("error", "message"),
        error_kind=("error", "type"),
        logits=True,
    )
