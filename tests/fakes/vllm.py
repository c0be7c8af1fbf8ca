"""Fake vLLM rerank server (`vllm serve <reranker>`): POST /rerank, /v1/rerank and /v2/rerank.

As vLLM's entrypoints (../shared/engines.md, section 1): one handler on three paths; `--api-key`
checked on the /v1 and /v2 paths only (401 {"error": "Unauthorized"}); `model` optional but, when
given, the served name (else 404); `query` a string, `documents` a non-empty list of strings,
`top_n` an int (0 = all), `truncate_prompt_tokens` an int >= -1 or null; unknown fields ignored
(vLLM logs them). A pair longer than `max_model_len` words without truncation is 400 with vLLM's
message. The answer: {id, model, usage{prompt_tokens, total_tokens}, results[{index, document{text,
multi_modal}, relevance_score}]} best first; errors {"error": {"message", "type", "param", "code"}}.
Tokens are counted as words.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.fakes.base import FakeProvider, FakeSpec, Recorded, Reply, fake_score

API_KEY = "vllm-fake-key-0123456789"
MODEL = "BAAI/bge-reranker-v2-m3"
_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError", 429: "RateLimitError"}


def error_reply(status: int, message: str, param: str | None = None) -> Reply:
    kind = _TYPES.get(status, "InternalServerError" if status >= 500 else "BadRequestError")
    return Reply(status, {"error": {"message": message, "type": kind, "param": param, "code": status}})


class VllmFake(FakeProvider):
    name = "vllm"

    def __init__(self, api_key: str | None = API_KEY, max_model_len: int = 512) -> None:
        super().__init__()
        self.api_key = api_key
        self.max_model_len = max_model_len

    def handle(self, request: Recorded) -> Reply:
        path = request.path.split("?")[0]
        if request.method != "POST" or path not in ("/rerank", "/v1/rerank", "/v2/rerank"):
            return Reply(404, {"detail": "Not Found"})
        guarded = path.startswith(("/v1", "/v2"))
        if self.api_key and guarded and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return Reply(401, {"error": "Unauthorized"})
        try:
            body = request.json()
        except ValueError:
            return error_reply(400, "Invalid JSON body")
        problem = self._check(body)
        if problem is not None:
            return problem
        query, docs = body["query"], body["documents"]
        truncate = body.get("truncate_prompt_tokens")
        lengths = [len(query.split()) + len(doc.split()) for doc in docs]
        if truncate is None and max(lengths) > self.max_model_len:
            return error_reply(
                400,
                f"This model's maximum context length is {self.max_model_len} tokens. However, you"
                f" requested {max(lengths)} tokens in the input for embedding generation.",
                "input_tokens",
            )
        results = sorted(
            (
                {
                    "index": i,
                    "document": {"text": doc, "multi_modal": None},
                    "relevance_score": fake_score(query, doc),
                }
                for i, doc in enumerate(docs)
            ),
            key=lambda r: -r["relevance_score"],
        )
        top_n = body.get("top_n") or 0
        if 0 < top_n < len(results):
            results = results[:top_n]
        tokens = sum(min(n, self.max_model_len) for n in lengths)
        return Reply(
            200,
            {
                "id": f"rerank-{uuid.uuid4().hex}",
                "model": body.get("model") or MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "results": results,
            },
        )

    def _check(self, body: Any) -> Reply | None:
        if not isinstance(body, dict):
            return error_reply(400, "Input should be a valid dictionary")
        model = body.get("model")
        if model is not None and model != MODEL:
            return error_reply(404, f"The model `{model}` does not exist.", "model")
        if not isinstance(body.get("query"), str):
            return error_reply(400, "query: Input should be a valid string", "query")
        docs = body.get("documents")
        if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
            return error_reply(400, "documents: Input should be a non-empty list of strings", "documents")
        top_n = body.get("top_n", 0)
        if not isinstance(top_n, int) or isinstance(top_n, bool):
            return error_reply(400, "top_n: Input should be a valid integer", "top_n")
        truncate = body.get("truncate_prompt_tokens")
        if truncate is not None and (not isinstance(truncate, int) or truncate < -1):
            return error_reply(400, "truncate_prompt_tokens: Input should be >= -1", "truncate_prompt_tokens")
        return None


CONTRACT = FakeSpec(
    kind="vllm",
    fake=VllmFake,
    model=MODEL,
    config=lambda url: {"kind": "vllm", "base_url": url, "api_key": API_KEY, "models": [MODEL]},
    error_reply=error_reply,
)
