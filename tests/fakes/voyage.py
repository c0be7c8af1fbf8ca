"""Fake Voyage AI rerank API (POST /v1/rerank), checking requests as the real API does.

Checked: bearer auth (401), a JSON object body, required `query`, `documents` (strings) and
`model` (one of the documented rerank models), types of `top_k` (int >= 1 or null),
`truncation` and `return_documents` (booleans) and at most 1,000 documents. Schema problems
answer 422 with a FastAPI-style {"detail": [{"loc", "msg", "type"}]} (the SDK's "malformed
request"); semantic ones 400 {"detail": "..."}. Message wording is ours. Unknown keys are ignored.
Tokens are counted as words: query words once per document plus the document's words.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.base import FakeProvider, FakeSpec, Recorded, Reply, bearer_ok, fake_score

MAX_DOCUMENTS = 1_000
MODELS = ("rerank-2.5", "rerank-2.5-lite", "rerank-2", "rerank-2-lite", "rerank-1", "rerank-lite-1")
_WORDS = re.compile(r"\S+")


def error_reply(status: int, message: str) -> Reply:
    return Reply(status, {"detail": message})


def _schema_error(loc: list[str | int], msg: str, kind: str) -> Reply:
    return Reply(422, {"detail": [{"type": kind, "loc": ["body", *loc], "msg": msg}]})


def _tokens(text: str) -> int:
    return len(_WORDS.findall(text))


class VoyageFake(FakeProvider):
    name = "voyage"

    def handle(self, request: Recorded) -> Reply:
        if request.path.split("?")[0] != "/v1/rerank" or request.method != "POST":
            return error_reply(404, "Not Found")
        if not bearer_ok(request):
            return error_reply(401, "Provided API key is invalid.")
        try:
            body = request.json()
        except ValueError:
            return _schema_error([0], "JSON decode error", "json_invalid")
        if not isinstance(body, dict):
            return _schema_error([], "Input should be a valid dictionary", "dict_type")
        problem = self.check(body)
        if problem is not None:
            return problem
        return Reply(200, self.answer(body))

    def check(self, body: dict[str, Any]) -> Reply | None:
        for key in ("query", "documents", "model"):
            if key not in body:
                return _schema_error([key], "Field required", "missing")
        if not isinstance(body["query"], str):
            return _schema_error(["query"], "Input should be a valid string", "string_type")
        docs = body["documents"]
        if not isinstance(docs, list):
            return _schema_error(["documents"], "Input should be a valid list", "list_type")
        for i, doc in enumerate(docs):
            if not isinstance(doc, str):
                return _schema_error(["documents", i], "Input should be a valid string", "string_type")
        top_k = body.get("top_k")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            return _schema_error(["top_k"], "Input should be a positive integer", "int_type")
        for key in ("truncation", "return_documents"):
            if key in body and not isinstance(body[key], bool):
                return _schema_error([key], "Input should be a valid boolean", "bool_type")
        if body["model"] not in MODELS:
            return error_reply(
                400, f"Model {body['model']} is not supported. Supported models: {list(MODELS)}"
            )
        if not body["query"].strip() or not docs:
            return error_reply(400, "The query and the list of documents must not be empty.")
        if len(docs) > MAX_DOCUMENTS:
            return error_reply(
                400, f"The number of documents must be at most {MAX_DOCUMENTS}, got {len(docs)}."
            )
        return None

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        query, docs = body["query"], body["documents"]
        data = sorted(
            ({"index": i, "relevance_score": fake_score(query, doc)} for i, doc in enumerate(docs)),
            key=lambda r: -r["relevance_score"],
        )
        if body.get("top_k"):
            data = data[: body["top_k"]]
        if body.get("return_documents"):
            for item in data:
                item["document"] = docs[item["index"]]
        tokens = sum(_tokens(query) + _tokens(doc) for doc in docs)
        return {"object": "list", "data": data, "model": body["model"], "usage": {"total_tokens": tokens}}


CONTRACT = FakeSpec(
    kind="voyage",
    fake=VoyageFake,
    model="rerank-2.5",
    config=lambda url: {"kind": "voyage", "base_url": f"{url}/v1", "api_key": "pa-contract-0123456789abcdef"},
    error_reply=error_reply,
    max_documents=MAX_DOCUMENTS,
)
