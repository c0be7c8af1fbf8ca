"""The Hugging Face text-embeddings-inference rerank dialect: `texts` in, a bare array out, raw
scores (logits) only from the embedded model, and TEI's own error types and x-* headers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from rerankd import errors
from rerankd.api.http.base import Dialect
from rerankd.api.http.bodies import TeiRequest
from rerankd.api.pipeline import CallIds, Pipeline
from rerankd.domain import Document, Ranked, RerankQuery, Truncation


class Tei(Dialect[TeiRequest]):
    name = "tei"
    body = TeiRequest
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
        elif isinstance(exc, errors.InvalidArgument):
            kind, status = "Validation", 422
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
