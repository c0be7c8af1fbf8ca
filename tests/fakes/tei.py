"""Fake Hugging Face text-embeddings-inference server: `POST /rerank` (also `/` and `/invocations`).

Checks what TEI checks: the `--api-key` bearer token when one is set (401, empty body), `query` a
string, `texts` a non-empty list of strings no longer than `max_client_batch_size`, boolean flags.
Answers a bare array `[{"index", "score", "text"?}]` sorted by score with the `x-compute-*`
headers, and errors as `{"error", "error_type"}` with TEI's statuses. With `max_input_length` (TEI's
`--max-input-length`), a query + text pair longer than that many tokens (here: whitespace-separated
words) is cut at the end when `truncate` is true, as TEI does, and refused (413) otherwise; so the
end of a long text never counts.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.base import FakeProvider, FakeSpec, Recorded, Reply, fake_score

API_KEY = "tei-fake-key-0123456789"
# TEI's ErrorType variants, serialized by serde under their Rust names, and their HTTP statuses.
_ERROR_TYPES = {400: "Empty", 413: "Validation", 422: "Validation", 424: "Backend", 429: "Overloaded"}


def error_reply(status: int, message: str) -> Reply:
    if status == 401:  # TEI's auth layer answers a bare 401
        return Reply(401, b"")
    error_type = _ERROR_TYPES.get(status, "Unhealthy" if status == 503 else "Backend")
    return Reply(status, {"error": message, "error_type": error_type})


class TeiFake(FakeProvider):
    name = "tei"

    def __init__(
        self,
        api_key: str | None = API_KEY,
        max_client_batch_size: int = 32,
        max_input_length: int | None = None,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.max_client_batch_size = max_client_batch_size
        self.max_input_length = max_input_length

    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path not in ("/rerank", "/", "/invocations"):
            return Reply(404, b"")
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error_reply(401, "")
        try:
            body = request.json()
        except ValueError as exc:
            return error_reply(422, f"Failed to deserialize the JSON body into the target type: {exc}")
        problem = self._validate(body)
        if problem:
            return error_reply(*problem)
        seen = []
        for text in body["texts"]:
            words, room = text.split(), self.max_input_length
            if room is not None and len(body["query"].split()) + len(words) > room:
                given = len(body["query"].split()) + len(words)
                if not body.get("truncate"):
                    return error_reply(
                        413,
                        f"Input validation error: `inputs` must have less than {room} tokens. Given: {given}",
                    )
                text = " ".join(words[: max(room - len(body["query"].split()), 0)])
            seen.append(text)
        scored = sorted(
            ((i, fake_score(body["query"], text)) for i, text in enumerate(seen)),
            key=lambda pair: pair[1],
            reverse=True,
        )
        ranks: list[dict[str, Any]] = []
        for index, score in scored:
            rank: dict[str, Any] = {"index": index, "score": score}
            if body.get("return_text"):
                rank["text"] = body["texts"][index]
            ranks.append(rank)
        tokens = sum(len(body["query"].split()) + len(text.split()) for text in body["texts"])
        headers = {"x-compute-type": "cpu", "x-compute-tokens": str(tokens), "x-compute-time": "1"}
        return Reply(200, ranks, headers)

    def _validate(self, body: Any) -> tuple[int, str] | None:
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return 422, "Failed to deserialize the JSON body: missing field `query`"
        texts = body.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return 422, "Failed to deserialize the JSON body: `texts` must be a list of strings"
        if not texts:
            return 400, "`texts` cannot be empty"
        if len(texts) > self.max_client_batch_size:
            limit = self.max_client_batch_size
            return 422, f"batch size {len(texts)} > maximum allowed batch size {limit}"
        for key in ("truncate", "raw_scores", "return_text"):
            if body.get(key) is not None and not isinstance(body[key], bool):
                return 422, f"Failed to deserialize the JSON body: `{key}` must be a boolean"
        if body.get("truncation_direction", "Right") not in ("Right", "Left", "right", "left"):
            return 422, "Failed to deserialize the JSON body: unknown `truncation_direction`"
        return None


CONTRACT = FakeSpec(
    kind="tei",
    fake=TeiFake,
    model="BAAI/bge-reranker-base",
    config=lambda url: {
        "kind": "tei",
        "base_url": url,
        "api_key": API_KEY,
        "models": ["BAAI/bge-reranker-base"],
    },
    error_reply=error_reply,
    max_documents=32,
    object_documents=False,
)
