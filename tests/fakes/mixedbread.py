"""Fake Mixedbread rerank API: POST /v1/reranking, as the official SDK and API reference describe.

(../shared/engines.md section 4.) Checked: bearer auth (401); `model` a string (default
mixedbread-ai/mxbai-rerank-large-v2), `query` 1..32,000 characters, `input` 1..1,000 strings or
objects (objects ranked on `rank_fields`, else their "text"), `top_k` an int >= 1 or -1 (all),
`return_input` and `rewrite_query` booleans; schema faults 422. The answer: {usage{prompt_tokens,
total_tokens, completion_tokens}, model, data[{index, score, input?, object: "rank_result"}],
object: "list", top_k, return_input}, best first. The error body is UNVERIFIED: this fake answers
{"message", "type"}, the shape the legacy SDK modelled (less its url and details).
"""

from __future__ import annotations

from typing import Any

from tests.fakes.base import FakeProvider, FakeSpec, Recorded, Reply, bearer_ok, fake_score

API_KEY = "mxb_fake0123456789abcdefghij"
DEFAULT_MODEL = "mixedbread-ai/mxbai-rerank-large-v2"
MAX_INPUT = 1_000
_TYPES = {400: "bad_request", 401: "unauthorized", 422: "validation_error", 429: "too_many_requests_error"}


def error_reply(status: int, message: str) -> Reply:
    return Reply(status, {"message": message, "type": _TYPES.get(status, "internal_server_error")})


def _text(item: Any, rank_fields: list[str] | None) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        values = [item.get(name) for name in (rank_fields or ["text"])]
        if all(isinstance(v, str) for v in values):
            return " ".join(values)  # type: ignore[arg-type]
    return None


class MixedbreadFake(FakeProvider):
    name = "mixedbread"

    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path.split("?")[0] != "/v1/reranking":
            return error_reply(404, "Not Found")
        if not bearer_ok(request):
            return error_reply(401, "Invalid API key")
        try:
            body = request.json()
        except ValueError:
            return error_reply(422, "Invalid JSON body")
        if not isinstance(body, dict):
            return error_reply(422, "body must be a JSON object")
        query, items = body.get("query"), body.get("input")
        if not isinstance(query, str) or not 1 <= len(query) <= 32_000:
            return error_reply(422, "query must be a string of 1 to 32000 characters")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_INPUT:
            return error_reply(422, f"input must be a list of 1 to {MAX_INPUT} items")
        rank_fields = body.get("rank_fields")
        if rank_fields is not None and (not isinstance(rank_fields, list) or not rank_fields):
            return error_reply(422, "rank_fields must be a non-empty list of strings")
        texts = [_text(item, rank_fields) for item in items]
        if any(text is None for text in texts):
            return error_reply(422, "each input must be a string or an object with the rank fields")
        top_k = body.get("top_k", -1)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or (top_k < 1 and top_k != -1):
            return error_reply(422, "top_k must be an integer >= 1, or -1")
        for key in ("return_input", "rewrite_query"):
            if key in body and not isinstance(body[key], bool):
                return error_reply(422, f"{key} must be a boolean")
        model = body.get("model", DEFAULT_MODEL)
        if not isinstance(model, str):
            return error_reply(422, "model must be a string")
        ranked = sorted(((i, fake_score(query, t)) for i, t in enumerate(texts)), key=lambda p: -p[1])  # type: ignore[arg-type]
        if top_k != -1:
            ranked = ranked[:top_k]
        data: list[dict[str, Any]] = []
        for i, score in ranked:
            entry: dict[str, Any] = {"index": i, "score": score, "object": "rank_result"}
            if body.get("return_input"):
                entry["input"] = items[i]
            data.append(entry)
        tokens = sum(len(query.split()) + len(str(t).split()) for t in texts)
        return Reply(
            200,
            {
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
                "model": model,
                "data": data,
                "object": "list",
                "top_k": top_k,
                "return_input": bool(body.get("return_input", False)),
            },
        )


CONTRACT = FakeSpec(
    kind="mixedbread",
    fake=MixedbreadFake,
    model=DEFAULT_MODEL,
    config=lambda url: {"kind": "mixedbread", "base_url": url, "api_key": API_KEY},
    error_reply=error_reply,
    max_documents=MAX_INPUT,
)
