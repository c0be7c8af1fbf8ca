"""Self-hosted Hugging Face text-embeddings-inference (TEI): `POST {base_url}/rerank`.

TEI serves one reranker per server, takes plain `texts` (documents with fields are rendered from
`rank_fields` by `domain.render_text`), has no top-n (we keep the best `top_n` of its answer) and
answers a bare array `[{"index", "score"}]`. The API key is optional (TEI's `--api-key`, sent as a
bearer token). Options: `max_client_batch_size` (TEI's limit on texts per call, default 32; the
router chunks longer lists) and `max_input_length` (tokens per pair). Usage is the
`x-compute-tokens` header when present; `max_tokens_per_doc` is refused. `parameters` may set
TEI-only fields (truncation_direction, raw_scores, ...); raw_scores defaults to false (activated
scores in [0, 1]). Errors: {"error", "error_type"}; a 401 from --api-key has no body.
"""

from __future__ import annotations

from pydantic import Field

from rerankd.config import ProviderConfig, ProviderOptions
from rerankd.providers.base import Capabilities
from rerankd.providers.http import HttpClient
from rerankd.providers.jsonspec import JsonProvider, JsonSpec, Truncate

DEFAULT_MAX_CLIENT_BATCH_SIZE = 32  # TEI's own --max-client-batch-size default


class TeiOptions(ProviderOptions):
    max_client_batch_size: int = Field(DEFAULT_MAX_CLIENT_BATCH_SIZE, ge=1)  # TEI's --max-client-batch-size
    max_input_length: int | None = Field(None, ge=1)  # TEI's --max-input-length (tokens per pair)


class TeiProvider(JsonProvider):
    """A TEI server running a sequence-classification reranker (e.g. BAAI/bge-reranker-base)."""

    kind = "tei"
    Options = TeiOptions
    spec = JsonSpec(
        path="/rerank",
        auth="optional-bearer",
        documents="texts",
        send_model=False,
        top_n=None,
        truncate=Truncate("truncate", end=True, none=False),
        max_tokens_why="TEI has no such field (use truncation)",
        defaults={"raw_scores": False, "return_text": False},
        results=None,
        score="score",
        usage=(),
        usage_header="x-compute-tokens",
        answers_model=False,
        error_keys=("error",),
        error_kind=("error_type",),
    )

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient) -> None:
        super().__init__(name, config, http)
        self.max_documents = self.options.max_client_batch_size

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(max_documents=self.max_documents, max_tokens=self.options.max_input_length)
