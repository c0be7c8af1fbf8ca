"""The Pinecone Inference rerank dialect (documents are objects; truncation via parameters)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rerankd import errors
from rerankd.api.http.base import Dialect, as_document, passage_json, search_units
from rerankd.api.http.bodies import PineconeError, PineconeRequest, PineconeResponse
from rerankd.api.pipeline import CallIds
from rerankd.domain import Ranked, RerankQuery, Truncation


class Pinecone(Dialect[PineconeRequest]):
    name = "pinecone"
    path = "/rerank"
    operation_id = "pineconeRerank"
    summary = "Pinecone Inference rerank (Api-Key and X-Pinecone-Api-Version headers are accepted)."
    body = PineconeRequest
    answer = PineconeResponse
    error_body = PineconeError

    def to_query(self, body: PineconeRequest, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        parameters = dict(body.parameters or {})
        truncate = parameters.get("truncate", "END")
        if not isinstance(truncate, str) or truncate.upper() not in ("END", "NONE"):
            raise errors.invalid("parameters.truncate", "must be END or NONE")
        return RerankQuery(
            model=body.model or "",
            query=body.query,
            documents=[as_document(d) for d in body.documents],
            top_n=body.top_n,
            return_documents=body.return_documents is not False,
            rank_fields=tuple(body.rank_fields or ("text",)),
            truncation=Truncation(truncate.upper()),
            parameters=parameters,
            trace=ids.trace,
            metadata=metadata,
            request_id=ids.request_id,
        )

    def render(self, ranked: Ranked, body: PineconeRequest, ids: CallIds) -> Any:
        data = []
        for item in ranked.results:
            ranked_doc: dict[str, Any] = {"index": item.index, "score": item.score}
            if body.return_documents is not False:
                ranked_doc["document"] = body.documents[item.index]
            if item.passage is not None:
                ranked_doc["passage"] = passage_json(item.passage)
            data.append(ranked_doc)
        return {"model": ranked.model, "data": data, "usage": {"rerank_units": search_units(ranked.usage)}}

    def error(self, exc: errors.RerankError) -> tuple[int, Any]:
        detail: dict[str, Any] = {"code": exc.code.name, "message": errors.scrub(exc.message)}
        if exc.field_violations:
            detail["details"] = {
                "field_violations": [{"field": f, "description": d} for f, d in exc.field_violations]
            }
        return exc.http_status, {"error": detail, "status": exc.http_status}
