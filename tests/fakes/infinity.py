"""Fake Infinity server (`infinity_emb v2 --model-id <reranker>`): POST {url_prefix}/rerank.

As Infinity's source (fastapi_schemas/pymodels.py RerankInput/ReRankResult, infinity_server.py;
../shared/engines.md section 2): bearer `--api-key` (401 {"detail": "Unauthorized"} with
WWW-Authenticate); `query` a string, `documents` 1..max_client_batch_size strings (each at most
122,880 characters, whitespace-stripped), `return_documents` and `raw_scores` booleans, `model` a
string (any name while one model is loaded), `top_n` > 0 or null; schema faults are FastAPI 422
{"detail": [{"type", "loc", "msg"}]}; extra fields are ignored. The answer, after FastAPI's
response model: {object: "rerank", results[{relevance_score, index, document}], model (the
served name), usage{prompt_tokens, total_tokens}, id, created}, best first, cut to top_n. Other
errors {"error": {"message", "type", "param", "code"}}. Tokens are counted as words.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from tests.fakes.base import FakeProvider, FakeSpec, Recorded, Reply, fake_score

API_KEY = "infinity-fake-key-0123456789"
SERVED = "mixedbread-ai/mxbai-rerank-xsmall-v1"
MAX_CLIENT_BATCH_SIZE = 2048
MAX_CHARS = 8192 * 15


def error_reply(status: int, message: str) -> Reply:
    if status == 401:
        return Reply(401, {"detail": "Unauthorized"}, {"WWW-Authenticate": "Bearer"})
    kind = "InternalServerError" if status >= 500 else "BadRequestError"
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": status}})


def _schema(loc: list[str | int], msg: str, kind: str) -> Reply:
    return Reply(422, {"detail": [{"type": kind, "loc": ["body", *loc], "msg": msg}]})


class InfinityFake(FakeProvider):
    name = "infinity"

    def __init__(self, api_key: str | None = API_KEY, url_prefix: str = "") -> None:
        super().__init__()
        self.api_key = api_key
        self.url_prefix = url_prefix

    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path.split("?")[0] != f"{self.url_prefix}/rerank":
            return Reply(404, {"detail": "Not Found"})
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error_reply(401, "")
        try:
            body = request.json()
        except ValueError:
            return _schema([], "JSON decode error", "json_invalid")
        problem = self._check(body)
        if problem is not None:
            return problem
        query = body["query"].strip()
        docs = [doc.strip() for doc in body["documents"]]
        raw = body.get("raw_scores", False)
        scored = []
        for i, doc in enumerate(docs):
            p = fake_score(query, doc)
            scored.append((i, math.log(p / (1 - p)) if raw else p))
        scored.sort(key=lambda pair: -pair[1])
        if body.get("top_n"):
            scored = scored[: body["top_n"]]
        keep = body.get("return_documents", False)
        tokens = sum(len(query.split()) + len(doc.split()) for doc in docs)
        return Reply(
            200,
            {
                "object": "rerank",
                "results": [
                    {"relevance_score": s, "index": i, "document": docs[i] if keep else None}
                    for i, s in scored
                ],
                "model": SERVED,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "id": f"infinity-{uuid.uuid4()}",
                "created": int(time.time()),
            },
        )

    def _check(self, body: Any) -> Reply | None:
        if not isinstance(body, dict):
            return _schema([], "Input should be a valid dictionary", "model_attributes_type")
        if not isinstance(body.get("query"), str):
            return _schema(["query"], "Input should be a valid string", "string_type")
        docs = body.get("documents")
        if not isinstance(docs, list):
            return _schema(["documents"], "Input should be a valid list", "list_type")
        if not 1 <= len(docs) <= MAX_CLIENT_BATCH_SIZE:
            return _schema(
                ["documents"],
                f"List should have at least 1 item and at most {MAX_CLIENT_BATCH_SIZE}",
                "too_long",
            )
        for i, doc in enumerate(docs):
            if not isinstance(doc, str):
                return _schema(["documents", i], "Input should be a valid string", "string_type")
            if len(doc) > MAX_CHARS or not doc.strip():
                return _schema(
                    ["documents", i], f"String should have 1 to {MAX_CHARS} characters", "string_too_long"
                )
        for key in ("return_documents", "raw_scores"):
            if key in body and not isinstance(body[key], bool):
                return _schema([key], "Input should be a valid boolean", "bool_type")
        if "model" in body and not isinstance(body["model"], str):
            return _schema(["model"], "Input should be a valid string", "string_type")
        top_n = body.get("top_n")
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n <= 0):
            return _schema(["top_n"], "Input should be greater than 0", "greater_than")
        return None


CONTRACT = FakeSpec(
    kind="infinity",
    fake=InfinityFake,
    model=SERVED,
    config=lambda url: {"kind": "infinity", "base_url": url, "api_key": API_KEY, "models": [SERVED]},
    error_reply=error_reply,
    max_documents=MAX_CLIENT_BATCH_SIZE,
)
