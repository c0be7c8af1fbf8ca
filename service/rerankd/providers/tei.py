"""Self-hosted Hugging Face text-embeddings-inference (TEI): `POST {base_url}/rerank`.

TEI serves one reranker per server, takes plain `texts` (documents with fields are rendered from
`rank_fields` by `domain.render_text`), has no top-n (we keep the first `top_n` of its sorted
answer) and answers a bare array `[{"index", "score"}]`. The API key is optional (TEI's
`--api-key`, sent as a bearer token). Options: `max_client_batch_size` (TEI's limit on texts per
call, default 32; the router chunks longer lists) and `max_input_length` (tokens per pair).
Usage is the `x-compute-tokens` header when present; `max_tokens_per_doc` is refused.
"""

from __future__ import annotations

from typing import Any

from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.domain import Scored, Truncation, Usage, render_text
from rerankd.providers.base import Capabilities, ProviderCall, ProviderResult
from rerankd.providers.http import (
    HttpClient,
    HttpProvider,
    HttpReply,
    HttpRequest,
    check_indices,
    encode_json,
)

DEFAULT_MAX_CLIENT_BATCH_SIZE = 32  # TEI's own --max-client-batch-size default


class TeiProvider(HttpProvider):
    """A TEI server running a sequence-classification reranker (e.g. BAAI/bge-reranker-base)."""

    kind = "tei"

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient) -> None:
        super().__init__(name, config, http)
        if not self.base_url:
            raise errors.ProviderMisconfigured(
                f"{name}: kind tei needs base_url (the TEI server)", provider=name
            )
        options = config.options
        self.max_batch = int(options.get("max_client_batch_size") or DEFAULT_MAX_CLIENT_BATCH_SIZE)
        max_input = options.get("max_input_length")
        self.max_input_length = int(max_input) if max_input else None
        if self.max_batch < 1:
            raise errors.ProviderMisconfigured(f"{name}: max_client_batch_size must be >= 1", provider=name)

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(max_documents=self.max_batch, max_tokens=self.max_input_length)

    def build_request(self, call: ProviderCall) -> HttpRequest:
        if call.max_tokens_per_doc is not None:
            raise errors.invalid("max_tokens_per_doc", f"not supported by {self.kind} (use truncation)")
        texts: list[str] = []
        for doc in call.documents:
            text = render_text(doc, call.rank_fields)
            if text is None:
                raise errors.invalid("documents", f"a document has no text to rank ({self.kind})")
            texts.append(text)
        # `parameters` may set TEI-only fields (truncation_direction, raw_scores); the unified
        # fields (query, texts, truncation) always win.
        body: dict[str, Any] = {"raw_scores": False, "return_text": False, **call.parameters}
        body.update(query=call.query, texts=texts, truncate=call.truncation is Truncation.END)
        key = self._api_key.get_secret_value() if self._api_key is not None else ""
        auth = {"authorization": f"Bearer {key}"} if key else {}  # TEI's --api-key is optional
        return HttpRequest(
            "POST", f"{self.base_url}/rerank", self.json_headers(call, auth), encode_json(body)
        )

    def parse_response(self, call: ProviderCall, reply: HttpReply) -> ProviderResult:
        ranks = reply.json()
        if not isinstance(ranks, list):
            raise errors.Internal(f"{self.name}: expected a JSON array from TEI /rerank", provider=self.name)
        pairs = [(int(rank["index"]), float(rank["score"])) for rank in ranks]
        check_indices(self.name, pairs, len(call.documents))
        if call.top_n is not None:
            pairs = pairs[: call.top_n]  # TEI answers sorted by score, best first
        tokens = reply.headers.get("x-compute-tokens", "")
        return ProviderResult(
            scores=[Scored(index, score) for index, score in pairs],
            usage=Usage(total_tokens=int(tokens) if tokens.isdigit() else 0, documents=len(call.documents)),
            model=call.model,
        )

    def error_message(self, reply: HttpReply) -> str:
        """TEI errors: {"error": "...", "error_type": "Validation"}; 401 from --api-key has no body."""
        try:
            body = reply.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            kind = body.get("error_type")
            return f"{kind}: {body['error']}" if isinstance(kind, str) and kind else body["error"]
        return super().error_message(reply)
