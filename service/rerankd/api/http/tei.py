"""The Hugging Face text-embeddings-inference rerank dialect: `texts` in, a bare array out, raw
scores (logits) only from the embedded model, TEI's own error types and x-* headers, and TEI's
`GET /info` and `GET /health` (router/src/http/server.rs), so TEI clients, which read /info first,
work with only the host changed (on `tei_port`, TEI's own paths; on the shared port under /tei).

/info describes the target the `default` route tries first (a TEI request names no model): for
the embedded model its source, dtype, labels and limits as loaded; for a hosted model what rerankd
knows of it, null where it knows nothing (its dtype is "unknown").
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from rerankd import __version__, errors
from rerankd.api.http.base import Dialect, Lookup, Served
from rerankd.api.http.bodies import TeiError, TeiInfo, TeiRequest, TeiResponse
from rerankd.api.pipeline import CallIds, Pipeline
from rerankd.config import DEFAULT_ALIAS
from rerankd.domain import Document, Ranked, RerankQuery, Truncation
from rerankd.local.files import BUNDLED_DTYPE, BUNDLED_MODEL_ID, BUNDLED_SOURCE, ModelFiles
from rerankd.local.provider import TOKENIZER_THREADS, LocalProvider

_QUANTIZED_NAME = re.compile(r"(?:^|[_.-])(q?u?int8|quantized)(?:[_.-]|$)")


def _info(served: Served) -> tuple[int, Any]:
    """TEI's Info for the target `default` tries first (deterministically: lowest priority, then
    highest weight, then name)."""
    pipeline = served.pipeline
    settings = pipeline.settings
    target = min(pipeline.targets(DEFAULT_ALIAS), key=lambda t: (t.priority, -t.weight, t.label))
    info: dict[str, Any] = {
        "model_id": target.model,
        "model_sha": None,
        "model_dtype": "unknown",
        "served_model_name": target.model,
        "model_type": {"reranker": {"id2label": {}, "label2id": {}}},
        "max_concurrent_requests": settings.max_concurrent_requests,
        "max_input_length": None,
        "max_batch_tokens": None,
        "max_batch_requests": None,
        "max_client_batch_size": settings.max_documents,
        "auto_truncate": True,  # `truncate` absent: cut at the limit
        "tokenization_workers": None,
        "version": __version__,
        "sha": None,
        "docker_label": None,
    }
    if isinstance(target.provider, LocalProvider):
        info.update(_local_info(target.provider))
    return 200, info


def _local_info(provider: LocalProvider) -> dict[str, Any]:
    """The embedded model's side of TEI's Info, from the files and graph it serves."""
    encoder = provider.encoder  # Unavailable while it loads
    files, source = encoder.files, provider.source
    config = files.config
    id2label = config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(max(encoder.labels, 1))}
    label2id = config.get("label2id") or {label: int(i) for i, label in id2label.items()}
    if source.repo_id:
        model_id, sha = source.repo_id, files.source.partition("@")[2] or None  # "hub org/name@<commit>"
    elif source.model_dir is not None:
        model_id, sha = str(source.model_dir), None
    else:
        model_id, sha = BUNDLED_MODEL_ID, None
    return {
        "model_id": model_id,
        "model_sha": sha,
        "model_dtype": _dtype(files, encoder.session.get_outputs()[0].type),
        "model_type": {"reranker": {"id2label": dict(id2label), "label2id": dict(label2id)}},
        "max_input_length": provider.max_length,
        # The scheduler scores one pair at a time (rerankd.local.model says why): a batch is one pair.
        "max_batch_tokens": provider.max_length,
        "max_batch_requests": 1,
        "tokenization_workers": TOKENIZER_THREADS,
    }


def _dtype(files: ModelFiles, output_type: str) -> str:
    """The weights' type: int8 for the bundled model and quantised exports (by their file names,
    files.choose_onnx's), else the graph's output type (`tensor(float16)` -> float16)."""
    if files.source == BUNDLED_SOURCE:
        return BUNDLED_DTYPE
    found = _QUANTIZED_NAME.search(files.onnx.name)
    if found is not None:
        return "uint8" if "uint8" in found.group(1) else "int8"
    element = output_type.removeprefix("tensor(").removesuffix(")")
    return "float32" if element == "float" else element


def _health(served: Served) -> tuple[int, Any]:
    """200 with no body while the server is ready; 503 in TEI's error shape while it starts or drains."""
    if served.ready():
        return 200, None
    raise errors.Unavailable("unhealthy")


class Tei(Dialect[TeiRequest]):
    name = "tei"
    path = "/rerank"
    prefix = "/tei"
    operation_id = "teiRerank"
    summary = "Hugging Face text-embeddings-inference rerank; answers a bare array."
    body = TeiRequest
    answer = TeiResponse
    error_body = TeiError
    lookups = (
        Lookup(
            "/info",
            "teiInfo",
            "TEI's model info: what the `default` route tries first.",
            TeiInfo,
            TeiError,
            _info,
        ),
        Lookup(
            "/health",
            "teiHealth",
            "TEI's health check: 200 when ready, 503 while starting or draining.",
            None,
            TeiError,
            _health,
            public=True,
        ),
    )
    field_aliases: ClassVar[Mapping[str, str]] = {"documents": "texts"}

    def to_query(self, body: TeiRequest, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        if not body.texts:
            raise errors.EmptyTexts(
                "texts: must not be empty", field_violations=[("texts", "must not be empty")]
            )
        if (body.truncation_direction or "right").lower() == "left":
            raise errors.invalid("truncation_direction", "only right is supported")
        return RerankQuery(
            model=body.model or "",
            query=body.query,
            documents=[Document(text=text) for text in body.texts],
            truncation=Truncation.NONE if body.truncate is False else Truncation.END,
            trace=ids.trace,
            metadata=metadata,
            request_id=ids.request_id,
        )

    async def check(self, body: TeiRequest, pipeline: Pipeline) -> None:
        if not body.raw_scores:
            return
        hosted = [t.label for t in pipeline.targets(body.model or "") if t.provider.kind != "local"]
        if hosted:
            raise errors.invalid(
                "raw_scores",
                f"raw scores exist only for the embedded model; {', '.join(hosted)} returns calibrated "
                "scores, not logits",
            )

    def render(self, ranked: Ranked, body: TeiRequest, ids: CallIds) -> Any:
        ranks = []
        for item in ranked.results:
            rank: dict[str, Any] = {"index": item.index}
            if body.return_text:
                rank["text"] = body.texts[item.index]
            rank["score"] = _logit(item.score) if body.raw_scores else item.score
            ranks.append(rank)
        return ranks

    def error(self, exc: errors.RerankError) -> tuple[int, Any]:
        status = exc.http_status
        if isinstance(exc, errors.EmptyTexts):
            kind = "Empty"
        elif isinstance(exc, errors.InvalidArgument):  # 422 as TEI's; 413 and 415 keep theirs
            kind, status = "Validation", 422 if status == 400 else status
        elif isinstance(exc, errors.ResourceExhausted):
            kind = "Overloaded"
        elif isinstance(exc, errors.Unavailable):
            kind = "Unhealthy"
        else:
            kind = "Backend"
        return status, {"error": errors.scrub(exc.message), "error_type": kind}

    def headers(self, ranked: Ranked, body: TeiRequest, started: float) -> dict[str, str]:
        return {
            "x-compute-characters": str(sum(len(text) for text in body.texts)),
            "x-compute-tokens": str(ranked.usage.total_tokens),
            "x-total-time": str(int((time.perf_counter() - started) * 1000)),
        }


def _logit(probability: float) -> float:
    """log(p / (1 - p)): the embedded model's raw logit, recovered from its sigmoid score."""
    p = min(max(probability, 1e-15), 1.0 - 1e-15)
    return math.log(p) - math.log1p(-p)
