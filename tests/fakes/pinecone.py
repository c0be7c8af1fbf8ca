"""Fake Pinecone Inference API: `POST /rerank` as in Pinecone's OpenAPI spec (2025-10 and later).

Checks what the real API checks: an `Api-Key`, a dated `X-Pinecone-Api-Version`, a known model,
object documents within the model's limit, every rank field present as a string, `top_n >= 1`.
Answers `{"model", "data": [{"index", "score", "document"?}], "usage": {"rerank_units"}}` and
errors as `{"error": {"code", "message"}, "status"}`.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.base import FakeProvider, FakeSpec, Recorded, Reply, fake_score

MODELS = {"bge-reranker-v2-m3": 100, "pinecone-rerank-v0": 100, "cohere-rerank-3.5": 200}
_VERSION = re.compile(r"^\d{4}-\d{2}(\.alpha)?$")
_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "UNKNOWN",
    503: "UNAVAILABLE",
}


def error_reply(status: int, message: str) -> Reply:
    code = _CODES.get(status, "UNKNOWN")
    return Reply(status, {"error": {"code": code, "message": message}, "status": status})


class PineconeFake(FakeProvider):
    name = "pinecone"

    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path.split("?")[0] != "/rerank":
            return error_reply(404, f"no route {request.method} {request.path}")
        if not request.headers.get("api-key"):
            return error_reply(401, "Invalid API key.")
        if not _VERSION.match(request.headers.get("x-pinecone-api-version", "")):
            return error_reply(400, "X-Pinecone-Api-Version header missing or malformed")
        try:
            body = request.json()
        except ValueError:
            return error_reply(400, "request body is not valid JSON")
        problem = _validate(body)
        if problem:
            return error_reply(400, problem)
        fields = body.get("rank_fields", ["text"])
        scored = [
            (i, fake_score(body["query"], _rank_text(doc, fields))) for i, doc in enumerate(body["documents"])
        ]
        scored.sort(key=lambda pair: pair[1], reverse=True)
        keep = body.get("top_n", len(scored))
        data: list[dict[str, Any]] = []
        for index, score in scored[:keep]:
            item: dict[str, Any] = {"index": index, "score": score}
            if body.get("return_documents", True):
                item["document"] = body["documents"][index]
            data.append(item)
        return Reply(200, {"model": body["model"], "data": data, "usage": {"rerank_units": 1}})


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "request body must be an object"
    model, query, documents = body.get("model"), body.get("query"), body.get("documents")
    if model not in MODELS:
        return f"Model '{model}' not found"
    if not isinstance(query, str) or not query:
        return "query: must be a non-empty string"
    if not isinstance(documents, list) or not documents or not all(isinstance(d, dict) for d in documents):
        return "documents: must be a non-empty array of objects"
    if len(documents) > MODELS[model]:
        return f"documents: at most {MODELS[model]} documents for model {model}"
    fields = body.get("rank_fields", ["text"])
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        return "rank_fields: must be a non-empty array of strings"
    for i, doc in enumerate(documents):
        for name in fields:
            if not isinstance(doc.get(name), str):
                return f"documents[{i}]: missing rank field '{name}'"
    top_n = body.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or top_n < 1):
        return "top_n: must be a positive integer"
    for key, kind in (("return_documents", bool), ("parameters", dict)):
        if key in body and not isinstance(body[key], kind):
            return f"{key}: wrong type"
    truncate = (body.get("parameters") or {}).get("truncate", "END")
    if truncate not in ("END", "NONE"):
        return "parameters.truncate: must be END or NONE"
    return None


def _rank_text(doc: dict[str, str], fields: list[str]) -> str:
    if len(fields) == 1:
        return doc[fields[0]]
    return "\n".join(f"{name}: {doc[name]}" for name in fields)


CONTRACT = FakeSpec(
    kind="pinecone",
    fake=PineconeFake,
    model="bge-reranker-v2-m3",
    config=lambda url: {"kind": "pinecone", "base_url": url, "api_key": "pc-fake-key-0123456789"},
    error_reply=error_reply,
    max_documents=100,
    object_documents=True,
)
