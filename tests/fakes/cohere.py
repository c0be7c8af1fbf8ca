"""Fake Cohere rerank API (POST /v1/rerank and /v2/rerank), checking requests as the real API does.

Checked: bearer auth (401), JSON body, required `query` (non-blank) and `documents` (non-empty,
at most 10,000), `model` (required on v2), types of every documented field, v2 documents are
strings only, v1 objects need `text` unless `rank_fields` name other keys, v1's
documents x max_chunks_per_doc < 10,000. The v2 fields removed from the API (return_documents,
rank_fields, max_chunks_per_doc) are refused here (how the real server treats them is
unverified; rerankd must not send them). Undocumented keys are accepted. Errors are
{"message": ...}; texts follow Cohere's where known, else are ours.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from tests.fakes.base import FakeProvider, FakeSpec, Recorded, Reply, bearer_ok, fake_score

MAX_DOCUMENTS = 10_000
_TOO_MANY_CHUNKS = (
    "number of total max chunks (number of documents * max chunks per doc) must be less than 10000"
)
_REMOVED_FROM_V2 = ("return_documents", "rank_fields", "max_chunks_per_doc")


def error_reply(status: int, message: str) -> Reply:
    return Reply(status, {"message": message})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class CohereFake(FakeProvider):
    """Both API versions on one server, like api.cohere.com."""

    name = "cohere"

    def handle(self, request: Recorded) -> Reply:
        version = {"/v1/rerank": "1", "/v2/rerank": "2"}.get(request.path.split("?")[0])
        if version is None or request.method != "POST":
            return error_reply(404, f"{request.method} {request.path} is not a valid endpoint")
        if not bearer_ok(request):
            return error_reply(401, "invalid api token")
        try:
            body = request.json()
        except ValueError:
            return error_reply(400, "invalid request: could not parse the request body as JSON")
        problem = self.check(body, version) if isinstance(body, dict) else "body must be a JSON object"
        if problem:
            return error_reply(400, f"invalid request: {problem}")
        return Reply(200, self.answer(body, version), self.answer_headers())

    def answer_headers(self) -> dict[str, str]:
        return {}

    def check(self, body: dict[str, Any], version: str) -> str | None:
        query, docs, model = body.get("query"), body.get("documents"), body.get("model")
        if version == "2":
            removed = [key for key in _REMOVED_FROM_V2 if key in body]
            if removed:
                return f"{removed[0]} is not a valid field for the v2 API"
            if not isinstance(model, str) or not model:
                return "model is required"
        elif model is not None and not isinstance(model, str):
            return "model must be a string"
        if not isinstance(query, str) or not query.strip():
            return "query must not be empty or be only whitespace"
        if not isinstance(docs, list) or not docs:
            return "list of documents must not be empty"
        if len(docs) > MAX_DOCUMENTS:
            return f"too many documents: {len(docs)} (the maximum is {MAX_DOCUMENTS})"
        for key in ("top_n", "max_tokens_per_doc", "max_chunks_per_doc"):
            if key in body and body[key] is not None and (not _is_int(body[key]) or body[key] < 1):
                return f"{key} must be a positive integer"
        if version == "2":
            return None if all(isinstance(d, str) for d in docs) else "documents must be a list of strings"
        return self.check_v1(body, docs)

    def check_v1(self, body: dict[str, Any], docs: list[Any]) -> str | None:
        fields = body.get("rank_fields")
        if fields is not None and (
            not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)
        ):
            return "rank_fields must be a list of strings"
        if "return_documents" in body and not isinstance(body["return_documents"], bool):
            return "return_documents must be a boolean"
        for i, doc in enumerate(docs):
            if isinstance(doc, str):
                continue
            if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
                return f"documents[{i}] must be a string or an object of strings"
            if not any(name in doc for name in fields or ["text"]):
                return f"documents[{i}] has none of the rank fields {fields or ['text']}"
        chunks = body.get("max_chunks_per_doc")
        if _is_int(chunks) and len(docs) * chunks >= 10_000:
            return _TOO_MANY_CHUNKS
        return None

    def answer(self, body: dict[str, Any], version: str) -> dict[str, Any]:
        docs = body["documents"]
        fields = body.get("rank_fields") or ["text"]
        ranked = sorted(
            (
                {"index": i, "relevance_score": fake_score(body["query"], _text(doc, fields))}
                for i, doc in enumerate(docs)
            ),
            key=lambda r: -r["relevance_score"],
        )
        if body.get("top_n"):
            ranked = ranked[: body["top_n"]]
        if body.get("return_documents"):
            for result in ranked:
                doc = docs[result["index"]]
                result["document"] = {"text": doc} if isinstance(doc, str) else doc
        meta = {
            "api_version": {"version": version},
            "billed_units": {"search_units": math.ceil(len(docs) / 100)},
        }
        return {"id": str(uuid.uuid4()), "results": ranked, "meta": meta}


def _text(doc: str | dict[str, str], fields: list[str]) -> str:
    """What the fake scores: a string, or the named fields of an object, in order, one per line."""
    if isinstance(doc, str):
        return doc
    return "\n".join(doc[name] for name in fields if name in doc)


def _config(url: str, **options: Any) -> dict[str, Any]:
    return {"kind": "cohere", "base_url": url, "api_key": "co-contract-0123456789abcdef", "options": options}


CONTRACT = FakeSpec(
    kind="cohere",
    fake=CohereFake,
    model="rerank-v3.5",
    config=_config,
    error_reply=error_reply,
    max_documents=MAX_DOCUMENTS,
)
CONTRACT_V1 = FakeSpec(
    kind="cohere",
    fake=CohereFake,
    model="rerank-english-v3.0",
    config=lambda url: _config(url, api_version="v1"),
    error_reply=error_reply,
    max_documents=MAX_DOCUMENTS,
    object_documents=True,
)
