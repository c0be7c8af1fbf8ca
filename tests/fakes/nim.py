"""Fake NVIDIA NIM reranking microservice: POST /v1/ranking (and the hosted `.../reranking`).

As NVIDIA's docs and clients (../shared/engines.md section 5): the body takes exactly `model`,
`query: {text}`, `passages: [{text}]` and `truncate` ("NONE", the default, or "END"); any other
field is 400 "<field>: unknown field, expected one of model, query, passages, truncate". With
NONE a pair over `max_tokens` words is 400 "Input length N exceeds maximum allowed token size M".
No key unless `api_key` is set (hosted: a bearer `nvapi-...` key). The answer: {rankings:
[{index, logit}]} best first, with usage{prompt_tokens, total_tokens}; a logit is raw (here the
log-odds of fake_score). Errors: {"object": "error", "message", "detail", "type"}.
"""

from __future__ import annotations

import math
from typing import Any

from tests.fakes.base import FakeProvider, FakeSpec, Recorded, Reply, fake_score

API_KEY = "nvapi-fake0123456789abcdefghij"
MODEL = "nvidia/llama-3.2-nv-rerankqa-1b-v2"
_FIELDS = ("model", "query", "passages", "truncate")


def error_reply(status: int, message: str) -> Reply:
    return Reply(
        status, {"object": "error", "message": message, "detail": message, "type": "invalid_request_error"}
    )


class NimFake(FakeProvider):
    name = "nim"

    def __init__(self, api_key: str | None = None, max_tokens: int = 8192) -> None:
        super().__init__()
        self.api_key = api_key
        self.max_tokens = max_tokens

    def handle(self, request: Recorded) -> Reply:
        path = request.path.split("?")[0]
        if request.method != "POST" or not (path == "/v1/ranking" or path.endswith("/reranking")):
            return error_reply(404, "Not Found")
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error_reply(401, "Unauthorized")
        try:
            body = request.json()
        except ValueError:
            return error_reply(400, "Invalid JSON")
        problem = self._check(body)
        if problem is not None:
            return problem
        query = body["query"]["text"]
        texts = [p["text"] for p in body["passages"]]
        if body.get("truncate", "NONE") == "NONE":
            for text in texts:
                length = len(query.split()) + len(text.split())
                if length > self.max_tokens:
                    return error_reply(
                        400, f"Input length {length} exceeds maximum allowed token size {self.max_tokens}"
                    )
        rankings = []
        for i, text in enumerate(texts):
            p = fake_score(query, text)
            rankings.append({"index": i, "logit": math.log(p / (1 - p))})
        rankings.sort(key=lambda r: -r["logit"])
        tokens = sum(len(query.split()) + len(t.split()) for t in texts)
        return Reply(200, {"rankings": rankings, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _check(self, body: Any) -> Reply | None:
        if not isinstance(body, dict):
            return error_reply(400, "body must be a JSON object")
        for key in body:
            if key not in _FIELDS:
                return error_reply(400, f"{key}: unknown field, expected one of {', '.join(_FIELDS)}")
        if body.get("model") != MODEL:
            return error_reply(404, f"Model {body.get('model')!r} not found")
        query = body.get("query")
        if not isinstance(query, dict) or not isinstance(query.get("text"), str):
            return error_reply(400, "query: expected an object with a text string")
        passages = body.get("passages")
        if not isinstance(passages, list) or not passages:
            return error_reply(400, "passages: expected a non-empty list")
        for i, passage in enumerate(passages):
            if (
                not isinstance(passage, dict)
                or set(passage) != {"text"}
                or not isinstance(passage["text"], str)
            ):
                return error_reply(400, f"passages[{i}]: expected an object with a text string")
        if body.get("truncate", "NONE") not in ("NONE", "END"):
            return error_reply(400, "truncate: expected NONE or END")
        return None


CONTRACT = FakeSpec(
    kind="nim",
    fake=NimFake,
    model=MODEL,
    config=lambda url: {"kind": "nim", "base_url": url, "models": [MODEL]},
    error_reply=error_reply,
)


class HostedNimFake(NimFake):
    """build.nvidia.com's shape: the model's endpoint in the path, a bearer `nvapi-` key."""

    def __init__(self) -> None:
        super().__init__(api_key=API_KEY)


CONTRACT_HOSTED = FakeSpec(
    kind="nim",
    fake=HostedNimFake,
    model=MODEL,
    config=lambda url: {
        "kind": "nim",
        "base_url": f"{url}/v1/retrieval/nvidia/llama-3_2-nv-rerankqa-1b-v2/reranking",
        "api_key": API_KEY,
        "models": [MODEL],
    },
    error_reply=error_reply,
)
