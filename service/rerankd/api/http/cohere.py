"""The Cohere rerank dialects (v1 and v2) and Portkey's unified shape, which extends Cohere's.

Portkey's SDK posts to Cohere's paths with x-portkey-* headers, so a Cohere dialect built with
`portkey=` hands such requests to it (`variant`); Portkey's own path, `/v1/rerank`, is Cohere v1's,
so on the shared port Portkey is also served under `/portkey`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rerankd import errors
from rerankd.api.http.base import BodyT, Dialect, as_document, echoed, passage_json, search_units
from rerankd.api.http.bodies import (
    CohereError,
    CohereResponse,
    CohereV1Request,
    CohereV2Request,
    PortkeyError,
    PortkeyRequest,
    PortkeyResponse,
)
from rerankd.api.pipeline import CallIds
from rerankd.domain import Ranked, RerankQuery, Truncation


class _Cohere(Dialect[BodyT]):
    version: ClassVar[str]
    answer = CohereResponse
    error_body = CohereError

    def __init__(self, *, portkey: Dialect[Any] | None = None) -> None:
        self.portkey = portkey  # speaks requests that carry any x-portkey-* header

    def variant(self, headers: Mapping[str, str]) -> Dialect[Any]:
        if self.portkey is not None and any(name.startswith("x-portkey-") for name in headers):
            return self.portkey
        return self

    def variants(self) -> tuple[tuple[str, Dialect[Any]], ...]:
        return () if self.portkey is None else (("with any x-portkey-* header", self.portkey),)

    def render(self, ranked: Ranked, body: BodyT, ids: CallIds) -> Any:
        documents: list[Any] = body.documents  # type: ignore[attr-defined]
        echo = bool(body.return_documents)  # type: ignore[attr-defined]
        results = []
        for item in ranked.results:
            result: dict[str, Any] = {"index": item.index, "relevance_score": item.score}
            if echo:
                result["document"] = echoed(documents[item.index])
            if item.passage is not None:
                result["passage"] = passage_json(item.passage)
            results.append(result)
        meta: dict[str, Any] = {
            "api_version": {"version": self.version},
            "billed_units": {"search_units": search_units(ranked.usage)},
        }
        if ranked.usage.total_tokens:
            meta["tokens"] = {"input_tokens": ranked.usage.total_tokens}
        return {"id": ids.request_id, "results": results, "meta": meta}

    def error(self, exc: errors.RerankError) -> tuple[int, Any]:
        return exc.http_status, {"message": errors.scrub(exc.message)}


class CohereV1(_Cohere[CohereV1Request]):
    name = "cohere-v1"
    path = "/v1/rerank"
    operation_id = "cohereV1Rerank"
    summary = "Cohere v1 rerank."
    body = CohereV1Request
    version = "1"

    def to_query(self, body: CohereV1Request, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        return RerankQuery(
            model=body.model or "",
            query=body.query,
            documents=[as_document(d) for d in body.documents],
            top_n=body.top_n,
            return_documents=bool(body.return_documents),
            rank_fields=tuple(body.rank_fields or ()),
            trace=ids.trace,
            metadata=metadata,
            request_id=ids.request_id,
        )


class CohereV2(_Cohere[CohereV2Request]):
    name = "cohere-v2"
    path = "/v2/rerank"
    operation_id = "cohereV2Rerank"
    summary = "Cohere v2 rerank."
    body = CohereV2Request
    version = "2"

    def to_query(self, body: CohereV2Request, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        return RerankQuery(
            model=body.model or "",
            query=body.query,
            documents=[as_document(d) for d in body.documents],
            top_n=body.top_n,
            return_documents=bool(body.return_documents),
            max_tokens_per_doc=body.max_tokens_per_doc,
            trace=ids.trace,
            metadata=metadata,
            request_id=ids.request_id,
        )


class Portkey(Dialect[PortkeyRequest]):
    name = "portkey"
    path = "/v1/rerank"
    prefix = "/portkey"
    operation_id = "portkeyRerank"
    summary = "Portkey unified rerank."
    body = PortkeyRequest
    answer = PortkeyResponse
    error_body = PortkeyError
    portkey_ids = True

    def to_query(self, body: PortkeyRequest, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        return RerankQuery(
            model=body.model or "",
            query=body.query,
            documents=[as_document(d) for d in body.documents],
            top_n=body.top_n,
            return_documents=bool(body.return_documents),
            rank_fields=tuple(body.rank_fields or ()),
            truncation=Truncation.NONE if body.truncation is False else Truncation.END,
            max_tokens_per_doc=body.max_tokens_per_doc,
            parameters=body.parameters or {},
            trace=ids.trace,
            metadata=metadata,
            request_id=ids.request_id,
        )

    def render(self, ranked: Ranked, body: PortkeyRequest, ids: CallIds) -> Any:
        results = []
        for item in ranked.results:
            result: dict[str, Any] = {"index": item.index, "relevance_score": item.score}
            if body.return_documents:
                result["document"] = echoed(body.documents[item.index])
            if item.passage is not None:
                result["passage"] = passage_json(item.passage)
            results.append(result)
        return {
            "id": ids.request_id,
            "object": "list",
            "results": results,
            "model": ranked.model,
            "usage": {"search_units": search_units(ranked.usage)},
            "provider": ranked.provider,
        }

    def error(self, exc: errors.RerankError) -> tuple[int, Any]:
        param = exc.field_violations[0][0] if exc.field_violations else None
        return exc.http_status, {
            "error": {
                "message": errors.scrub(exc.message),
                "type": exc.reason.lower(),
                "param": param,
                "code": exc.code.name,
            },
            "provider": exc.provider or "rerankd",
        }
