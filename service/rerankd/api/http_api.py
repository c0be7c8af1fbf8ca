"""The HTTP/JSON front door: Cohere (v1, v2), Portkey, Pinecone and TEI rerank dialects over the
same pipeline and router as the gRPC servicer.

    POST /v1/rerank           Cohere v1 shape (Portkey's unified shape when x-portkey-* headers come)
    POST /v2/rerank           Cohere v2 shape (likewise)
    POST /portkey/v1/rerank   Portkey's unified shape, always
    POST /rerank              Pinecone Inference shape (Api-Key, X-Pinecone-Api-Version)
    POST /tei/rerank          Hugging Face text-embeddings-inference shape (bare array back)
    GET  /openapi.json        this API, described

Each dialect only maps its JSON to a RerankQuery and the Ranked answer (or a taxonomy error) back
to its own JSON; validation, deadlines, tracing and routing are api/pipeline.py's. Request and
trace ids come from the same headers as over gRPC (traceparent, x-request-id, x-trace-id and the
x-portkey-* aliases) and go back as x-request-id, x-trace-id and x-span-id response headers.
docs/http-api.md has the decisions (TEI raw_scores, usage units, model defaults) and curl examples.

`HttpServer` runs the app with uvicorn on the server's own event loop, on its own port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

import uvicorn
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, ValidationError, WithJsonSchema
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rerankd import __version__, errors, tracing
from rerankd.api.pipeline import CallIds, Pipeline, identify, log_access
from rerankd.config import Settings
from rerankd.domain import Document, Ranked, RerankQuery, TraceContext, Truncation, Usage

_LOG = logging.getLogger("rerankd.http")
_BodyT = TypeVar("_BodyT", bound=BaseModel)
_T = TypeVar("_T")
_PORTKEY_TRACE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

# -- Auth seam ----------------------------------------------------------------------------------

Authorizer = Callable[[Mapping[str, str]], Awaitable[None]]
"""Checks a request's lower-cased headers before any work; raises errors.Unauthenticated to refuse."""


async def admit_everyone(headers: Mapping[str, str]) -> None:
    """The authorizer used until auth lands (issue 8): every caller is admitted, no header is read.

    Auth plugs in here (Bearer or Api-Key, the same tokens as on gRPC); a refusal raised as
    errors.Unauthenticated is reported in each dialect's own error shape with status 401.
    """


# -- Request bodies -----------------------------------------------------------------------------


def _string_or_object(value: Any) -> Any:
    if isinstance(value, str | dict):
        return value
    raise ValueError("must be a string or an object")


def _object_or_string(value: Any) -> Any:
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, dict):
        return value
    raise ValueError("must be an object (or a string, taken as its text)")


_DOCUMENT_SCHEMA = {
    "oneOf": [
        {"type": "string"},
        {
            "type": "object",
            "description": "`text` plus any other fields; rank_fields name the ones scored.",
            "additionalProperties": True,
        },
    ]
}
StringOrObject = Annotated[Any, AfterValidator(_string_or_object), WithJsonSchema(_DOCUMENT_SCHEMA)]
ObjectDocument = Annotated[Any, AfterValidator(_object_or_string), WithJsonSchema(_DOCUMENT_SCHEMA)]
_Model = Field(None, description="Model name, alias or provider/model; empty or absent: `default`.")
_TopN = Field(None, ge=1, description="Return only the best N; absent: all.")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CohereV1Request(_Body):
    """Cohere's v1 rerank request (max_chunks_per_doc is accepted; long documents are truncated)."""

    model: str | None = _Model
    query: str
    documents: list[StringOrObject]
    top_n: int | None = _TopN
    rank_fields: list[str] | None = None
    return_documents: bool | None = Field(None, description="true: results carry `document`.")
    max_chunks_per_doc: int | None = Field(None, ge=1)


class CohereV2Request(_Body):
    """Cohere's v2 rerank request (objects are accepted as documents too, as in v1)."""

    model: str | None = _Model
    query: str
    documents: list[StringOrObject]
    top_n: int | None = _TopN
    max_tokens_per_doc: int | None = Field(None, ge=1)
    priority: int | None = Field(None, description="Accepted and ignored.")
    return_documents: bool | None = Field(None, description="Older v2 field: results carry `document`.")


class PortkeyRequest(_Body):
    """Portkey's unified rerank request (CreateRerankRequest)."""

    model: str | None = _Model
    query: str
    documents: list[StringOrObject]
    top_n: int | None = _TopN
    return_documents: bool | None = Field(None, description="true: results carry `document`.")
    max_tokens_per_doc: int | None = Field(None, ge=1)
    priority: float | None = Field(None, description="Accepted and ignored.")
    rank_fields: list[str] | None = None
    truncation: bool | None = Field(None, description="false: refuse over-long pairs instead of cutting.")
    parameters: dict[str, Any] | None = None


class PineconeRequest(_Body):
    """Pinecone Inference's rerank request (documents are objects; a string is taken as its text)."""

    model: str | None = _Model
    query: str
    documents: list[ObjectDocument]
    rank_fields: list[str] | None = Field(None, description='Fields scored; default ["text"].')
    top_n: int | None = _TopN
    return_documents: bool | None = Field(None, description="Default true: data[] carry `document`.")
    parameters: dict[str, Any] | None = Field(None, description='e.g. {"truncate": "END" | "NONE"}')


class TeiRequest(_Body):
    """text-embeddings-inference's rerank request; `model` is a rerankd extension."""

    query: str
    texts: list[str]
    truncate: bool | None = Field(None, description="absent or true: cut at the limit; false: refuse.")
    truncation_direction: Literal["right", "Right", "left", "Left"] | None = None
    raw_scores: bool | None = Field(None, description="true: the embedded model's logit (docs/http-api.md).")
    return_text: bool | None = None
    model: str | None = _Model


# -- Response bodies (the renderers build plain dicts; these describe them and tests check them) -


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CohereResult(_Out):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = None


class CohereApiVersion(_Out):
    version: str


class CohereBilledUnits(_Out):
    search_units: int


class CohereTokens(_Out):
    input_tokens: int


class CohereMeta(_Out):
    api_version: CohereApiVersion
    billed_units: CohereBilledUnits
    tokens: CohereTokens | None = None


class CohereResponse(_Out):
    id: str
    results: list[CohereResult]
    meta: CohereMeta


class CohereError(_Out):
    message: str


class PortkeyUsage(_Out):
    search_units: int


class PortkeyResponse(_Out):
    id: str
    object: Literal["list"]
    results: list[CohereResult]
    model: str
    usage: PortkeyUsage
    provider: str


class PortkeyErrorDetail(_Out):
    message: str
    type: str | None
    param: str | None
    code: str | None


class PortkeyError(_Out):
    error: PortkeyErrorDetail
    provider: str


class PineconeRanked(_Out):
    index: int
    score: float
    document: dict[str, Any] | None = None


class PineconeUsage(_Out):
    rerank_units: int


class PineconeResponse(_Out):
    model: str
    data: list[PineconeRanked]
    usage: PineconeUsage


class PineconeErrorDetail(_Out):
    code: str
    message: str
    details: dict[str, Any] | None = None


class PineconeError(_Out):
    error: PineconeErrorDetail
    status: int


class TeiRank(_Out):
    index: int
    text: str | None = None
    score: float


class TeiResponse(RootModel[list[TeiRank]]):
    pass


class TeiError(_Out):
    error: str
    error_type: str


# -- Dialects -----------------------------------------------------------------------------------


def _field_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _document(item: str | dict[str, Any]) -> Document:
    if isinstance(item, str):
        return Document(text=item)
    text, doc_id = item.get("text"), item.get("id")
    return Document(
        text="" if text is None else _field_text(text),
        id="" if doc_id is None else _field_text(doc_id),
        fields={k: _field_text(v) for k, v in item.items() if k not in ("text", "id") and v is not None},
    )


def _echo(item: str | dict[str, Any]) -> dict[str, Any]:
    return {"text": item} if isinstance(item, str) else item


def _search_units(usage: Usage) -> int:
    """Units of one query over up to 100 documents: Cohere's search units, Pinecone's rerank units."""
    return usage.search_units or usage.rerank_units


def _violations_message(violations: Sequence[tuple[str, str]], shown: int = 5) -> str:
    parts = [f"{field}: {text}" for field, text in violations[:shown]]
    more = f"; and {len(violations) - shown} more" if len(violations) > shown else ""
    return "; ".join(parts) + more


class Dialect(Generic[_BodyT]):
    """One wire format: parse its body, build the query, render the answer and errors."""

    name: ClassVar[str]
    body: type[_BodyT]
    field_aliases: ClassVar[Mapping[str, str]] = {}

    def parse(self, raw: bytes) -> _BodyT:
        try:
            return self.body.model_validate_json(raw)
        except ValidationError as exc:
            violations = [_violation(item) for item in exc.errors(include_url=False)]
            raise errors.InvalidArgument(
                _violations_message(violations), field_violations=violations
            ) from None

    def to_query(self, body: _BodyT, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        raise NotImplementedError

    async def check(self, body: _BodyT, pipeline: Pipeline) -> None:
        """Dialect-specific refusals made before any scoring (none by default)."""

    def render(self, ranked: Ranked, body: _BodyT, ids: CallIds) -> Any:
        raise NotImplementedError

    def error(self, exc: errors.RerankError) -> tuple[int, Any]:
        raise NotImplementedError

    def headers(self, ranked: Ranked, body: _BodyT, started: float) -> dict[str, str]:
        return {}

    def presented(self, exc: errors.RerankError) -> errors.RerankError:
        """`exc` as this dialect reports it: fields renamed (documents -> texts for TEI) and, for a
        bad request, a message naming every field at fault rather than the first.
        """
        if not exc.field_violations:
            return exc
        renamed = [(self._alias(f), d) for f, d in exc.field_violations]
        message = exc.message
        if isinstance(exc, errors.InvalidArgument):
            message = _violations_message(renamed)
        if renamed == exc.field_violations and message == exc.message:
            return exc
        return type(exc)(
            message,
            field_violations=renamed,
            retry_after=exc.retry_after,
            provider=exc.provider,
            reason=exc.reason,
            retryable=exc.retryable,
        )

    def _alias(self, field: str) -> str:
        for domain_name, own in self.field_aliases.items():
            if field == domain_name or field.startswith((domain_name + "[", domain_name + ".")):
                return own + field[len(domain_name) :]
        return field


def _violation(item: Mapping[str, Any]) -> tuple[str, str]:
    loc = item.get("loc", ())
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = str(item.get("msg", "is not valid"))
    kind = item.get("type", "")
    if kind == "json_invalid":
        detail = (item.get("ctx") or {}).get("error", "")
        return "body", f"is not valid JSON ({detail})" if detail else "is not valid JSON"
    if not path:
        return "body", "must be a JSON object" if kind == "model_type" else message
    if kind == "missing":
        return path, "is required"
    message = message.removeprefix("Value error, ")
    return path, message[:1].lower() + message[1:]


class _Cohere(Dialect[_BodyT]):
    version: ClassVar[str]

    def render(self, ranked: Ranked, body: _BodyT, ids: CallIds) -> Any:
        documents: list[Any] = body.documents  # type: ignore[attr-defined]
        echo = bool(body.return_documents)  # type: ignore[attr-defined]
        results = []
        for item in ranked.results:
            result: dict[str, Any] = {"index": item.index, "relevance_score": item.score}
            if echo:
                result["document"] = _echo(documents[item.index])
            results.append(result)
        meta: dict[str, Any] = {
            "api_version": {"version": self.version},
            "billed_units": {"search_units": _search_units(ranked.usage)},
        }
        if ranked.usage.total_tokens:
            meta["tokens"] = {"input_tokens": ranked.usage.total_tokens}
        return {"id": ids.request_id, "results": results, "meta": meta}

    def error(self, exc: errors.RerankError) -> tuple[int, Any]:
        return exc.http_status, {"message": errors.scrub(exc.message)}


class CohereV1(_Cohere[CohereV1Request]):
    name = "cohere-v1"
    body = CohereV1Request
    version = "1"

    def to_query(self, body: CohereV1Request, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        return RerankQuery(
            model=body.model or "",
            query=body.query,
            documents=[_document(d) for d in body.documents],
            top_n=body.top_n,
            return_documents=bool(body.return_documents),
            rank_fields=tuple(body.rank_fields or ()),
            trace=ids.trace,
            metadata=metadata,
            request_id=ids.request_id,
        )


class CohereV2(_Cohere[CohereV2Request]):
    name = "cohere-v2"
    body = CohereV2Request
    version = "2"

    def to_query(self, body: CohereV2Request, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        return RerankQuery(
            model=body.model or "",
            query=body.query,
            documents=[_document(d) for d in body.documents],
            top_n=body.top_n,
            return_documents=bool(body.return_documents),
            max_tokens_per_doc=body.max_tokens_per_doc,
            trace=ids.trace,
            metadata=metadata,
            request_id=ids.request_id,
        )


class Portkey(Dialect[PortkeyRequest]):
    name = "portkey"
    body = PortkeyRequest

    def to_query(self, body: PortkeyRequest, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        return RerankQuery(
            model=body.model or "",
            query=body.query,
            documents=[_document(d) for d in body.documents],
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
                result["document"] = _echo(body.documents[item.index])
            results.append(result)
        return {
            "id": ids.request_id,
            "object": "list",
            "results": results,
            "model": ranked.model,
            "usage": {"search_units": _search_units(ranked.usage)},
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


class Pinecone(Dialect[PineconeRequest]):
    name = "pinecone"
    body = PineconeRequest

    def to_query(self, body: PineconeRequest, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        parameters = dict(body.parameters or {})
        truncate = parameters.get("truncate", "END")
        if not isinstance(truncate, str) or truncate.upper() not in ("END", "NONE"):
            raise errors.invalid("parameters.truncate", "must be END or NONE")
        return RerankQuery(
            model=body.model or "",
            query=body.query,
            documents=[_document(d) for d in body.documents],
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
            data.append(ranked_doc)
        return {"model": ranked.model, "data": data, "usage": {"rerank_units": _search_units(ranked.usage)}}

    def error(self, exc: errors.RerankError) -> tuple[int, Any]:
        detail: dict[str, Any] = {"code": exc.code.name, "message": errors.scrub(exc.message)}
        if exc.field_violations:
            detail["details"] = {
                "field_violations": [{"field": f, "description": d} for f, d in exc.field_violations]
            }
        return exc.http_status, {"error": detail, "status": exc.http_status}


class _EmptyTexts(errors.InvalidArgument):
    """TEI reports an empty `texts` as its own error type (Empty, 400)."""


class Tei(Dialect[TeiRequest]):
    name = "tei"
    body = TeiRequest
    field_aliases: ClassVar[Mapping[str, str]] = {"documents": "texts"}

    def to_query(self, body: TeiRequest, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        if not body.texts:
            raise _EmptyTexts("texts: must not be empty", field_violations=[("texts", "must not be empty")])
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
        if isinstance(exc, _EmptyTexts):
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


COHERE_V1, COHERE_V2, PORTKEY, PINECONE, TEI = CohereV1(), CohereV2(), Portkey(), Pinecone(), Tei()
DIALECTS: tuple[Dialect[Any], ...] = (COHERE_V1, COHERE_V2, PORTKEY, PINECONE, TEI)


# -- The app ------------------------------------------------------------------------------------


class _ClientGone(Exception):
    """The caller closed the connection before the answer was ready."""


def _wants_portkey(headers: Mapping[str, str]) -> bool:
    return any(name.startswith("x-portkey-") for name in headers)


class RerankHttpApi:
    """The ASGI app's endpoints over one Pipeline."""

    def __init__(
        self, pipeline: Pipeline, settings: Settings, *, authorize: Authorizer = admit_everyone
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.authorize = authorize
        self.max_body_bytes = settings.max_receive_message_bytes
        self.openapi = openapi_document()
        self._openapi_bytes = _dumps(self.openapi)

    def app(self) -> Starlette:
        routes = [
            Route("/v1/rerank", self._cohere_v1, methods=["POST"]),
            Route("/v2/rerank", self._cohere_v2, methods=["POST"]),
            Route("/portkey/v1/rerank", self._portkey, methods=["POST"]),
            Route("/rerank", self._pinecone, methods=["POST"]),
            Route("/tei/rerank", self._tei, methods=["POST"]),
            Route("/openapi.json", self._openapi, methods=["GET"]),
        ]
        return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})

    async def _cohere_v1(self, request: Request) -> Response:
        dialect = PORTKEY if _wants_portkey(request.headers) else COHERE_V1
        return await self.handle(request, dialect)

    async def _cohere_v2(self, request: Request) -> Response:
        dialect = PORTKEY if _wants_portkey(request.headers) else COHERE_V2
        return await self.handle(request, dialect)

    async def _portkey(self, request: Request) -> Response:
        return await self.handle(request, PORTKEY, portkey=True)

    async def _pinecone(self, request: Request) -> Response:
        return await self.handle(request, PINECONE)

    async def _tei(self, request: Request) -> Response:
        return await self.handle(request, TEI)

    async def _openapi(self, request: Request) -> Response:
        return Response(self._openapi_bytes, media_type="application/json")

    async def handle(self, request: Request, dialect: Dialect[Any], *, portkey: bool = False) -> Response:
        """Serve one rerank call in `dialect`; every outcome is answered in that dialect's shape."""
        started = time.perf_counter()
        headers = dict(request.headers)  # Starlette lower-cases header names
        ids = identify("", TraceContext(), headers)
        out_headers = _id_headers(ids, headers, portkey or _wants_portkey(headers))
        method = f"http {dialect.name}"
        model, documents = "", 0
        try:
            await self.authorize(headers)
            body = dialect.parse(await self._body(request))
            query = dialect.to_query(body, ids, tracing.header_metadata(headers))
            model, documents = query.model, len(query.documents)
            await dialect.check(body, self.pipeline)
            ranked = await _unless_disconnected(request, self.pipeline.rerank(query))
            payload = dialect.render(ranked, body, ids)
            out_headers["x-provider"] = ranked.provider
            out_headers["x-attempts"] = str(len(ranked.attempts))
            cache = getattr(ranked, "cache", "")  # "hit"/"miss" where the route caches answers
            if cache:
                out_headers["x-cache"] = cache
            out_headers.update(dialect.headers(ranked, body, started))
            log_access(
                method=method,
                status="OK",
                request_id=ids.request_id,
                trace_id=ids.trace.trace_id,
                model=model,
                provider=ranked.provider,
                documents=documents,
                started=started,
            )
            return _json(200, payload, out_headers)
        except errors.RerankError as exc:
            failure: errors.RerankError = exc
            status_name = exc.code.name
        except _ClientGone:
            log_access(
                method=method,
                status="CANCELLED",
                request_id=ids.request_id,
                trace_id=ids.trace.trace_id,
                model=model,
                provider="",
                documents=documents,
                started=started,
            )
            return Response(status_code=499, headers=out_headers)  # nobody is left to read it
        except Exception:
            _LOG.exception("unexpected error in %s (request id %s)", method, ids.request_id)
            failure, status_name = errors.internal_for(ids.request_id), "INTERNAL"
        log_access(
            method=method,
            status=status_name,
            request_id=ids.request_id,
            trace_id=ids.trace.trace_id,
            model=model,
            provider=failure.provider,
            documents=documents,
            started=started,
        )
        status, payload = dialect.error(dialect.presented(failure))
        if failure.retry_after is not None:
            out_headers["retry-after"] = str(max(math.ceil(failure.retry_after), 0))
        return _json(status, payload, out_headers)

    async def _body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise errors.invalid("body", f"is larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise errors.invalid("body", f"is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _id_headers(ids: CallIds, headers: Mapping[str, str], portkey: bool) -> dict[str, str]:
    out = {"x-request-id": ids.request_id, "x-trace-id": ids.trace.trace_id, "x-span-id": ids.trace.span_id}
    if portkey:
        theirs = headers.get("x-portkey-trace-id", "").strip()
        out["x-portkey-trace-id"] = theirs if _PORTKEY_TRACE_ID.match(theirs) else ids.trace.trace_id
    return out


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, _T]) -> _T:
    """Await `work`, cancelling it (and raising _ClientGone) if the caller disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise _ClientGone
    finally:
        watcher.cancel()
        task.cancel()


async def _disconnect(request: Request) -> None:
    """Return once the ASGI server reports the client gone (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json(status: int, payload: Any, headers: Mapping[str, str]) -> Response:
    return Response(_dumps(payload), status_code=status, headers=dict(headers), media_type="application/json")


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return _json(status, {"message": f"{detail}: {request.method} {request.url.path}"}, {})


def create_app(
    pipeline: Pipeline, settings: Settings, *, authorize: Authorizer = admit_everyone
) -> Starlette:
    """The ASGI app of the HTTP front door."""
    return RerankHttpApi(pipeline, settings, authorize=authorize).app()


# -- OpenAPI ------------------------------------------------------------------------------------

_TRACE_HEADERS = [
    ("traceparent", "W3C trace context; the server's span becomes its child."),
    ("tracestate", "W3C trace state, passed on to providers."),
    ("x-request-id", "Caller's request id (else one is generated); echoed back."),
    ("x-trace-id", "32-hex trace id when no traceparent is sent."),
    ("x-span-id", "The caller's span id (16 hex)."),
    ("x-parent-span-id", "Parent of the caller's span."),
    ("x-span-name", "Name of the caller's span."),
    ("x-metadata", "JSON object of string metadata for this call."),
    ("x-portkey-trace-id", "Portkey alias of x-trace-id; echoed back verbatim."),
    ("x-portkey-span-id", "Portkey alias of x-span-id."),
    ("x-portkey-parent-span-id", "Portkey alias of x-parent-span-id."),
    ("x-portkey-span-name", "Portkey alias of x-span-name."),
    ("x-portkey-metadata", "Portkey alias of x-metadata."),
]
_RESPONSE_HEADERS = {
    "x-request-id": "The request id (the caller's or a generated one).",
    "x-trace-id": "The trace id (the caller's or a generated one).",
    "x-span-id": "The server's span id in that trace.",
}
_OPERATIONS: list[tuple[str, str, Dialect[Any], str, str, str]] = [
    (
        "/v1/rerank",
        "cohereV1Rerank",
        COHERE_V1,
        "CohereResponse",
        "CohereError",
        "Cohere v1 rerank. With any x-portkey-* header the body and answer are Portkey's "
        "(PortkeyRequest, PortkeyResponse, PortkeyError).",
    ),
    (
        "/v2/rerank",
        "cohereV2Rerank",
        COHERE_V2,
        "CohereResponse",
        "CohereError",
        "Cohere v2 rerank. With any x-portkey-* header the body and answer are Portkey's.",
    ),
    (
        "/portkey/v1/rerank",
        "portkeyRerank",
        PORTKEY,
        "PortkeyResponse",
        "PortkeyError",
        "Portkey unified rerank.",
    ),
    (
        "/rerank",
        "pineconeRerank",
        PINECONE,
        "PineconeResponse",
        "PineconeError",
        "Pinecone Inference rerank (Api-Key and X-Pinecone-Api-Version headers are accepted).",
    ),
    (
        "/tei/rerank",
        "teiRerank",
        TEI,
        "TeiResponse",
        "TeiError",
        "Hugging Face text-embeddings-inference rerank; answers a bare array.",
    ),
]


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 description of the HTTP API, schemas generated from the body models."""
    models: list[type[BaseModel]] = [d.body for d in DIALECTS]
    models += [CohereResponse, CohereError, PortkeyResponse, PortkeyError, PineconeResponse, PineconeError]
    models += [TeiResponse, TeiError]
    _, schema = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    parameters = [
        {"name": name, "in": "header", "required": False, "description": text, "schema": {"type": "string"}}
        for name, text in _TRACE_HEADERS
    ]
    out_headers = {
        name: {"description": text, "schema": {"type": "string"}} for name, text in _RESPONSE_HEADERS.items()
    }
    paths: dict[str, Any] = {}
    for path, operation_id, dialect, ok, error, summary in _OPERATIONS:
        error_body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{error}"}}}
        paths[path] = {
            "post": {
                "operationId": operation_id,
                "summary": summary,
                "parameters": parameters,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{dialect.body.__name__}"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "Results, best first.",
                        "headers": out_headers,
                        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ok}"}}},
                    },
                    "default": {"description": "An error, in this dialect's shape.", "content": error_body},
                },
            }
        }
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rerankd HTTP API",
            "version": __version__,
            "description": "Cohere-, Portkey-, Pinecone- and TEI-compatible rerank endpoints.",
        },
        "paths": paths,
        "components": {"schemas": schema.get("$defs", {})},
    }


# -- Serving ------------------------------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside rerankd's loop: the process's SIGTERM/SIGINT handling stays rerankd's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class HttpServer:
    """The HTTP front door on its own port, served by uvicorn on the running event loop."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.port = 0
        self._socket: socket.socket | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def bind(self) -> int:
        """Bind the listening socket now (errors surface here); returns the bound port."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        return self.port

    async def start(self, grace: float) -> None:
        """Serve on the bound socket; returns once uvicorn accepts connections."""
        if self._socket is None:
            self.bind()
        # uvicorn's start/stop chatter ("Started server process", ...) would read as another process.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=max(grace, 0.1),
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="rerankd-http")  # type: ignore[list-item]
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"HTTP server on {self.address} stopped during start-up")
            await asyncio.sleep(0.005)

    async def stop(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish within `grace`, then close."""
        server, task = self._server, self._task
        if server is None or task is None:
            if self._socket is not None:
                self._socket.close()
            return
        server.config.timeout_graceful_shutdown = max(grace, 0.1)
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), grace + 2.0)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            if self._socket is not None:
                self._socket.close()
