"""Self-hosted Hugging Face text-embeddings-inference (TEI): `POST {base_url}/rerank`.

TEI serves one reranker per server, takes plain `texts` (documents with fields are rendered from
`rank_fields` by `domain.render_text`), has no top-n (we keep the first `top_n` of its sorted
answer) and answers a bare array `[{"index", "score"}]`. The API key is optional (TEI's
`--api-key`, sent as a bearer token). Options: `max_client_batch_size` (TEI's limit on texts per
call, default 32; the router chunks longer lists) and `max_input_length` (tokens per pair).
Usage is the `x-compute-tokens` header when present; `max_tokens_per_doc` is refused.
"""

from __future__ import annotations

from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.domain import Truncation, Usage
from rerankd.providers.base import Capabilities, ProviderCall, ProviderResult
from rerankd.providers.http import HttpClient, HttpProvider, HttpReply, HttpRequest, encode_json
from rerankd.providers.jsonwire import error_text, scores, texts, unsupported, with_parameters

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
            raise unsupported(self.name, "max_tokens_per_doc", "TEI has no such field (use truncation)")
        body = {"query": call.query, "texts": texts(call), "truncate": call.truncation is Truncation.END}
        # `parameters` may set TEI-only fields (truncation_direction, raw_scores, ...), not mapped ones.
        body = with_parameters(self.name, body, call.parameters, frozenset())
        body.setdefault("raw_scores", False)  # False: activated scores in [0, 1]
        body.setdefault("return_text", False)
        key = self._api_key.get_secret_value() if self._api_key is not None else ""
        auth = {"authorization": f"Bearer {key}"} if key else {}  # TEI's --api-key is optional
        return HttpRequest(
            "POST", f"{self.base_url}/rerank", self.json_headers(call, auth), encode_json(body)
        )

    def parse_response(self, call: ProviderCall, reply: HttpReply) -> ProviderResult:
        ranks = scores(self.name, reply.json(), len(call.documents), score_key="score")
        if call.top_n is not None:
            ranks = ranks[: call.top_n]  # TEI has no top-n; its answer is sorted best first
        tokens = reply.headers.get("x-compute-tokens", "")
        usage = Usage(total_tokens=int(tokens) if tokens.isdigit() else 0, documents=len(call.documents))
        return ProviderResult(ranks, usage, call.model)

    def error_message(self, reply: HttpReply) -> str:
        """TEI errors: {"error": "...", "error_type": "Validation"}; 401 from --api-key has no body."""
        try:
            body = reply.json()
        except ValueError:
            body = None
        kind = body.get("error_type") if isinstance(body, dict) else None
        message = error_text(reply, ("error",)) or super().error_message(reply)
        return f"{kind}: {message}" if isinstance(kind, str) and kind else message
