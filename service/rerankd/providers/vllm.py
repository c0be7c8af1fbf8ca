"""vLLM's rerank API: `POST {base_url}/v1/rerank` (a self-hosted `vllm serve` of a reranker).

Verified in vllm-project/vllm (entrypoints/pooling/score protocol and api_router, read through
../shared/engines.md): `/rerank`, `/v1/rerank` and `/v2/rerank` are one handler (Jina/Cohere
shaped); the request is {model?, query, documents: [str], top_n (0 = all), truncate_prompt_tokens};
the answer {id, model, usage{total_tokens}, results[{index, document{text}, relevance_score}]},
best first. `--api-key` guards only the `/v1` (newer: `/v2`) paths, so rerankd calls `/v1/rerank`
and sends the key as a bearer token when one is set. Errors: {"error": {"message", "type",
"param", "code"}}; a wrong key is 401 {"error": "Unauthorized"}; older releases answer the flat
{"message", ...}: all three are read. Cross-encoders answer sigmoid scores in (0, 1).
Truncation END sends `truncate_prompt_tokens: -1` (vLLM's "the model's max length"), NONE sends
nothing (a pair past max_model_len is refused with 400). UNVERIFIED: that -1 means exactly that on
the rerank path of every release. `max_tokens_per_doc` is refused: only the newest releases have
it, and vLLM ignores unknown fields silently. No document limit.
"""

from __future__ import annotations

from rerankd.providers.jsonspec import JsonProvider, JsonSpec, Truncate


class VllmProvider(JsonProvider):
    """A vLLM server running a cross-encoder (bge-reranker, Qwen3-Reranker, ...)."""

    kind = "vllm"
    spec = JsonSpec(
        path="/v1/rerank",
        auth="optional-bearer",
        truncate=Truncate("truncate_prompt_tokens", end=-1, none=None),
        max_tokens_why="not every vLLM release has it, and one without it ignores it silently",
        error_keys=("error", "message", "detail"),
    )
