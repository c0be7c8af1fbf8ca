"""NVIDIA NIM text reranking (NeMo Retriever): `POST {base_url}/v1/ranking` (self-hosted).

Verified in NVIDIA's NIM reranking docs (using-reranking.html) and NVIDIA's LangChain client
(langchain-nvidia-ai-endpoints reranking.py), read through ../shared/engines.md: the request is
{model, query: {text}, passages: [{text}], truncate: "NONE" | "END"}, nothing else (an unknown
field is 400); the answer {rankings: [{index, logit}]} best first, newer releases with
usage{prompt_tokens, total_tokens}; there is no top-n (rerankd keeps the best `top_n`). Scores are
raw logits: rerankd applies a sigmoid, into (0, 1) as other providers answer, unless the option
`raw_scores` is true. Truncation maps 1:1; max_tokens_per_doc is refused. The hosted API
(https://ai.api.nvidia.com/v1/retrieval/nvidia/<model_with_underscores>/reranking, a bearer
`nvapi-...` key) takes the same body: set base_url to that endpoint. Errors: {"object": "error",
"message", ...} (read from "message", then "detail"). UNVERIFIED: passages per request (none
declared), 400 or 422 for an over-long pair, usage in every release, whether a self-hosted
container checks a key (the key is sent when configured).
"""

from __future__ import annotations

from rerankd.providers.jsonspec import JsonProvider, JsonSpec, RawScoresOptions, Truncate


class NimProvider(JsonProvider):
    """A NIM reranking microservice (nvidia/llama-3.2-nv-rerankqa-1b-v2, ...)."""

    kind = "nim"
    Options = RawScoresOptions
    spec = JsonSpec(
        path="/v1/ranking",
        auth="optional-bearer",
        query_object="text",
        documents="passages",
        document_object="text",
        top_n=None,
        truncate=Truncate("truncate", end="END", none="NONE"),
        results="rankings",
        score="logit",
        answers_model=False,
        error_keys=("message", "detail", "error"),
        key_prefixes=("nvapi",),
        endpoints=("/reranking",),
        logits=True,
    )
