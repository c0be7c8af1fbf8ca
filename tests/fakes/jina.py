"""Fake Jina AI rerank API (POST /v1/rerank), checking requests the way the real API is documented.

Checked: bearer auth (401), a JSON object body, `model` (always sent by rerankd; whether Jina
requires it is unverified, the fake does), non-blank `query`, non-empty `documents` of strings or
{"text": str} objects, `top_n` (int >= 1) and `return_documents` (boolean). Errors are
{"detail": ...} (FastAPI style; unverified for Jina). With return_documents the answer's
`document` is {"text": ...}, or a plain string when `document_style="string"` (both are seen).
"""

from __future__ import annotations

from typing import Any

from tests.fakes.base import FakeProvider, FakeSpec, Recorded, Reply, bearer_ok, fake_score


def error_reply(status: int, message: str) -> Reply:
    return Reply(status, {"detail": message})


class JinaFake(FakeProvider):
    name = "jina"

    def __init__(self, document_style: str = "object") -> None:
        super().__init__()
        self.document_style = document_style

    def handle(self, request: Recorded) -> Reply:
        if request.path.split("?")[0] != "/v1/rerank" or request.method != "POST":
            return error_reply(404, "Not Found")
        if not bearer_ok(request):
            return error_reply(401, "Unauthorized: invalid API key")
        try:
            body = request.json()
        except ValueError:
            return error_reply(422, "Invalid JSON body")
        if not isinstance(body, dict):
            return error_reply(422, "body must be a JSON object")
        return self.check(body) or Reply(200, self.answer(body))

    def check(self, body: dict[str, Any]) -> Reply | None:
        """A 422 for a malformed field, a 400 for an empty query or document list, else None."""
        if not isinstance(body.get("model"), str) or not body["model"]:
            return error_reply(422, "model must be a non-empty string")
        if not isinstance(body.get("query"), str):
            return error_reply(422, "query must be a string")
        docs = body.get("documents")
        if not isinstance(docs, list):
            return error_reply(422, "documents must be a list")
        for i, doc in enumerate(docs):
            if not (isinstance(doc, str) or (isinstance(doc, dict) and isinstance(doc.get("text"), str))):
                return error_reply(422, f"documents[{i}] must be a string or an object with a text string")
        top_n = body.get("top_n")
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
            return error_reply(422, "top_n must be a positive integer")
        if "return_documents" in body and not isinstance(body["return_documents"], bool):
            return error_reply(422, "return_documents must be a boolean")
        if not body["query"].strip():
            return error_reply(400, "Query cannot be empty")
        if not docs:
            return error_reply(400, "No documents provided")
        return None

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        query = body["query"]
        texts = [doc if isinstance(doc, str) else doc["text"] for doc in body["documents"]]
        results = sorted(
            ({"index": i, "relevance_score": fake_score(query, text)} for i, text in enumerate(texts)),
            key=lambda r: -r["relevance_score"],
        )
        if body.get("top_n"):
            results = results[: body["top_n"]]
        if body.get("return_documents"):
            for item in results:
                text = texts[item["index"]]
                item["document"] = text if self.document_style == "string" else {"text": text}
        tokens = sum(len(query.split()) + len(text.split()) for text in texts)
        return {
            "model": body["model"],
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            "results": results,
        }


CONTRACT = FakeSpec(
    kind="jina",
    fake=JinaFake,
    model="jina-reranker-v2-base-multilingual",
    config=lambda url: {"kind": "jina", "base_url": f"{url}/v1", "api_key": "jina_contract0123456789abcdef"},
    error_reply=error_reply,
)
