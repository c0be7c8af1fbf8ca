"""The Dialect contract (where it is served and with which body models; parse a body, build the
RerankQuery, render the answer and errors) and the helpers the dialects share: JSON documents to
domain Documents, billing units, and pydantic validation errors turned into field violations.

A dialect declares its endpoints once, as class attributes: its rerank call's own path (the
vendor's), the prefix it takes on the shared HTTP port when that path is another dialect's, its
request, answer and error models, and any GET endpoints besides (`Lookup`: TEI's /info and
/health). The app's routes (app.py) and /openapi.json (openapi.py) are both generated from them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from rerankd import errors
from rerankd.api.pipeline import CallIds, Pipeline
from rerankd.domain import Document, Passage, Ranked, RerankQuery, Usage

BodyT = TypeVar("BodyT", bound=BaseModel)


def _field_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def as_document(item: str | dict[str, Any]) -> Document:
    """A request's document (a string, or an object with `text`, `id` and other fields) as a Document."""
    if isinstance(item, str):
        return Document(text=item)
    text, doc_id = item.get("text"), item.get("id")
    return Document(
        text="" if text is None else _field_text(text),
        id="" if doc_id is None else _field_text(doc_id),
        fields={k: _field_text(v) for k, v in item.items() if k not in ("text", "id") and v is not None},
    )


def echoed(item: str | dict[str, Any]) -> dict[str, Any]:
    """A request's document as results echo it back (a string becomes {"text": ...})."""
    return {"text": item} if isinstance(item, str) else item


def passage_json(passage: Passage) -> dict[str, int]:
    """The winning passage as results carry it (rerankd's extra field; docs/http-api.md)."""
    return {"start": passage.start, "end": passage.end, "index": passage.index, "count": passage.count}


def search_units(usage: Usage) -> int:
    """Units of one query over up to 100 documents: Cohere's search units, Pinecone's rerank units."""
    return usage.search_units or usage.rerank_units


def _violations_message(violations: Sequence[tuple[str, str]], shown: int = 5) -> str:
    parts = [f"{field}: {text}" for field, text in violations[:shown]]
    more = f"; and {len(violations) - shown} more" if len(violations) > shown else ""
    return "; ".join(parts) + more


@dataclass(frozen=True, slots=True)
class Served:
    """What a dialect's GET endpoints may read: the pipeline (router, settings) and whether the
    server is ready (every provider started, not draining)."""

    pipeline: Pipeline
    ready: Callable[[], bool]


@dataclass(frozen=True, slots=True)
class Lookup:
    """A GET endpoint of a dialect besides its rerank call (TEI's /info and /health)."""

    path: str  # the dialect's own path, as `Dialect.path`
    operation_id: str
    summary: str
    answer: type[BaseModel] | None  # the 200 body's model; None: an empty 200
    error: type[BaseModel]  # the body of a non-200 answer (a RerankError raised by `serve`)
    serve: Callable[[Served], tuple[int, Any]]  # (status, JSON body, or None for an empty body)
    public: bool = False  # True: answered without authentication (health checks)


class Dialect(Generic[BodyT]):
    """One wire format: where it is served, its body models; parse its body, build the query,
    render the answer and errors."""

    name: ClassVar[str]
    path: ClassVar[str]  # its rerank call's own path (the vendor's): POST
    prefix: ClassVar[str] = ""  # before `path` on the shared HTTP port, when that path is another's
    operation_id: ClassVar[str]  # /openapi.json's name for the rerank call
    summary: ClassVar[str]
    body: type[BodyT]  # the request
    answer: ClassVar[type[BaseModel]]  # the 200 body
    error_body: ClassVar[type[BaseModel]]  # every other answer's body
    lookups: ClassVar[tuple[Lookup, ...]] = ()
    portkey_ids: ClassVar[bool] = False  # answers echo x-portkey-trace-id even with no x-portkey-* header
    field_aliases: ClassVar[Mapping[str, str]] = {}

    def variant(self, headers: Mapping[str, str]) -> Dialect[Any]:
        """The dialect a request on this dialect's path speaks, by its (lower-cased) headers."""
        return self

    def variants(self) -> tuple[tuple[str, Dialect[Any]], ...]:
        """(when, dialect) for every other dialect `variant` may choose (for /openapi.json)."""
        return ()

    def parse(self, raw: bytes) -> BodyT:
        try:
            return self.body.model_validate_json(raw)
        except ValidationError as exc:
            violations = [_violation(item) for item in exc.errors(include_url=False)]
            raise errors.InvalidArgument(
                _violations_message(violations), field_violations=violations
            ) from None

    def to_query(self, body: BodyT, ids: CallIds, metadata: Mapping[str, str]) -> RerankQuery:
        raise NotImplementedError

    async def check(self, body: BodyT, pipeline: Pipeline) -> None:
        """Dialect-specific refusals made before any scoring (none by default)."""

    def render(self, ranked: Ranked, body: BodyT, ids: CallIds) -> Any:
        raise NotImplementedError

    def error(self, exc: errors.RerankError) -> tuple[int, Any]:
        raise NotImplementedError

    def headers(self, ranked: Ranked, body: BodyT, started: float) -> dict[str, str]:
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
