"""Fake llama.cpp server (`llama-server --reranking -m <reranker>.gguf`): its rerank endpoints.

As tools/server (../shared/engines.md section 3): `/rerank`, `/reranking`, `/v1/rerank` and
`/v1/reranking`; `--api-key` read from `Authorization` (a leading "Bearer " stripped) or
`X-Api-Key` (401 authentication_error "Invalid API Key"); `query` must be a string, `documents` a
non-empty string array (or `texts`, which answers TEI's bare array); `top_n` defaults to all. Each
pair over the physical batch (`ubatch` words here) is a 500 "input (N tokens) is too large to
process. increase the physical batch size (current batch size: M)". The answer: {model,
object: "list", usage{prompt_tokens, total_tokens}, results[{index, relevance_score}]}, best first,
where a score is the rank head's raw logit (here the log-odds of fake_score). Errors:
{"error": {"code", "message", "type"}}.
"""

from __future__ import annotations

import math
from typing import Any

from tests.fakes.base import FakeProvider, FakeSpec, Recorded, Reply, fake_score

API_KEY = "llama-fake-key-0123456789"
MODEL = "bge-reranker-v2-m3-Q8_0.gguf"
PATHS = ("/rerank", "/reranking", "/v1/rerank", "/v1/reranking")
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
_TYPES |= {501: "not_supported_error", 503: "unavailable_error"}


def error_reply(status: int, message: str) -> Reply:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return Reply(status, {"error": {"code": status, "message": message, "type": kind}})


def logit(query: str, text: str) -> float:
    """The fake's raw score: the log-odds of fake_score (so a sigmoid gives fake_score back)."""
    p = fake_score(query, text)
    return math.log(p / (1 - p))


class LlamaCppFake(FakeProvider):
    name = "llamacpp"

    def __init__(self, api_key: str | None = API_KEY, ubatch: int = 512) -> None:
        super().__init__()
        self.api_key = api_key
        self.ubatch = ubatch

    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path.split("?")[0] not in PATHS:
            return error_reply(404, "File Not Found")
        if self.api_key:
            given = request.headers.get("authorization", "").removeprefix("Bearer ") or request.headers.get(
                "x-api-key", ""
            )
            if given != self.api_key:
                return error_reply(401, "Invalid API Key")
        try:
            body = request.json()
        except ValueError as exc:
            return error_reply(400, f"Failed to parse JSON: {exc}")
        if not isinstance(body, dict) or "query" not in body:
            return error_reply(400, '"query" must be provided')
        query = body["query"]
        if not isinstance(query, str):
            return error_reply(400, '"query" must be a string')
        tei = "texts" in body
        docs = body.get("texts") if tei else body.get("documents")
        if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
            return error_reply(400, '"documents" must be a non-empty string array')
        for doc in docs:
            tokens = len(query.split()) + len(doc.split()) + 3
            if tokens > self.ubatch:
                return error_reply(
                    500,
                    f"input ({tokens} tokens) is too large to process. increase the physical batch"
                    f" size (current batch size: {self.ubatch})",
                )
        top_n = body.get("top_n", len(docs))
        if not isinstance(top_n, int) or isinstance(top_n, bool):
            return error_reply(400, '"top_n" must be an integer')
        ranked = sorted(((i, logit(query, d)) for i, d in enumerate(docs)), key=lambda p: -p[1])[:top_n]
        if tei:
            return Reply(200, [{"index": i, "score": s} for i, s in ranked])
        used = sum(len(query.split()) + len(d.split()) + 3 for d in docs)
        return Reply(
            200,
            {
                "model": body.get("model") or MODEL,
                "object": "list",
                "usage": {"prompt_tokens": used, "total_tokens": used},
                "results": [{"index": i, "relevance_score": s} for i, s in ranked],
            },
        )


def _config(url: str) -> dict[str, Any]:
    return {"kind": "llamacpp", "base_url": url, "api_key": API_KEY, "models": [MODEL]}


CONTRACT = FakeSpec(kind="llamacpp", fake=LlamaCppFake, model=MODEL, config=_config, error_reply=error_reply)
