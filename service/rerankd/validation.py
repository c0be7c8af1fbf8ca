"""Front-door-independent checks of a RerankQuery: precise INVALID_ARGUMENT with the field named.

`Limits` holds the size caps (documents per request, bytes per document, query bytes, fields per
document, metadata entries and bytes, parameters depth and size); `receive_limit` turns them into
the gRPC max receive message size, so the transport refuses what validation could never accept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rerankd import errors
from rerankd.domain import Document, RerankQuery, render_text

if TYPE_CHECKING:
    from rerankd.config import Settings

MAX_DOCUMENTS = 10_000
MAX_MODEL_BYTES = 256  # model names and aliases are short; a huge one would only bloat error messages
_MAX_VIOLATIONS = 20
_NOT_TEXT = "is not valid Unicode text (lone surrogate)"
# Protobuf framing per document (tags, lengths) and per field entry, and for the rest of a request
# (model, rank_fields, trace, ids): the slack receive_limit adds to the byte caps.
_DOCUMENT_FRAMING = 32
_FIELD_FRAMING = 16
_REQUEST_SLACK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Size caps of one request; every one is configurable (Settings.max_*)."""

    max_documents: int = MAX_DOCUMENTS
    max_document_bytes: int = 64 * 1024  # UTF-8 bytes of id + text + field names and values
    max_query_bytes: int = 16 * 1024
    max_document_fields: int = 64
    max_metadata_entries: int = 64
    max_metadata_bytes: int = 16 * 1024  # UTF-8 bytes of keys and values together
    max_parameters_depth: int = 8  # nesting of objects and lists; {} is depth 1
    max_parameters_bytes: int = 64 * 1024  # compact JSON size

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_documents=settings.max_documents,
            max_document_bytes=settings.max_document_bytes,
            max_query_bytes=settings.max_query_bytes,
            max_document_fields=settings.max_document_fields,
            max_metadata_entries=settings.max_metadata_entries,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_parameters_depth=settings.max_parameters_depth,
            max_parameters_bytes=settings.max_parameters_bytes,
        )


DEFAULT_LIMITS = Limits()


def receive_limit(limits: Limits, ceiling: int) -> int:
    """The gRPC max receive message size: the largest request `limits` can accept, at most `ceiling`.

    Parameters travel as a google.protobuf.Struct, which can take several times its JSON size
    (every number is 9 bytes plus framing), hence the factor 8 on max_parameters_bytes.
    """
    per_document = limits.max_document_bytes + _DOCUMENT_FRAMING + limits.max_document_fields * _FIELD_FRAMING
    largest = (
        limits.max_documents * per_document
        + limits.max_query_bytes
        + limits.max_metadata_bytes
        + limits.max_metadata_entries * _FIELD_FRAMING
        + limits.max_parameters_bytes * 8
        + _REQUEST_SLACK
    )
    return min(largest, ceiling)


def validate(query: RerankQuery, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise errors.InvalidArgument listing every field at fault (the first 20)."""
    violations: list[tuple[str, str]] = []
    if _utf8(query.model) > MAX_MODEL_BYTES or _utf8(query.model) < 0:
        violations.append(("model", f"must be text of at most {MAX_MODEL_BYTES} bytes"))
    query_bytes = _utf8(query.query)
    if not query.query.strip():
        violations.append(("query", "must not be empty or only whitespace"))
    elif query_bytes < 0:
        violations.append(("query", _NOT_TEXT))
    elif query_bytes > limits.max_query_bytes:
        violations.append(("query", f"has {query_bytes} bytes; at most {limits.max_query_bytes} allowed"))
    if not query.documents:
        violations.append(("documents", "must hold at least one document"))
    elif len(query.documents) > limits.max_documents:
        violations.append(
            ("documents", f"has {len(query.documents)} documents; at most {limits.max_documents} allowed")
        )
    if len(query.rank_fields) > limits.max_document_fields:
        violations.append(
            ("rank_fields", f"names {len(query.rank_fields)} fields; at most {limits.max_document_fields}")
        )
    for index, name in enumerate(query.rank_fields[: limits.max_document_fields]):
        if not name.strip():
            violations.append((f"rank_fields[{index}]", "must not be empty"))
    if len(set(query.rank_fields)) != len(query.rank_fields):
        violations.append(("rank_fields", "names a field twice"))
    _check_metadata(query.metadata, limits, violations)
    _check_parameters(query.parameters, limits, violations)
    if len(query.documents) <= limits.max_documents and not _plain_documents_fit(query, limits):
        plain = not query.rank_fields
        most = limits.max_document_bytes
        for index, doc in enumerate(query.documents):
            text = doc.text
            # The common case in O(1) per check, same verdict as _check_document: no fields, ASCII id
            # and text (as many UTF-8 bytes as characters, no lone surrogates), within the size
            # limit, text not blank (str.isascii is O(1) in CPython; isspace stops at the first
            # non-space).
            if (
                plain
                and not doc.fields
                and text.isascii()
                and doc.id.isascii()
                and len(text) + len(doc.id) <= most
                and text
                and not text.isspace()
            ):
                continue
            if len(violations) >= _MAX_VIOLATIONS:
                break
            _check_document(index, doc, query.rank_fields, limits, violations)
    if violations:
        first_field, first_text = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise errors.InvalidArgument(f"{first_field}: {first_text}{more}", field_violations=violations)


def _plain_documents_fit(query: RerankQuery, limits: Limits) -> bool:
    """True when every document passes the per-document checks by the common case's O(1) tests
    (the per-document loop's fast test, for all documents at once, in C-level passes): no rank
    fields and no document fields, ASCII ids and texts, none blank, each within the size limit."""
    documents = query.documents
    if not documents:
        return True
    if query.rank_fields or any(doc.fields for doc in documents):
        return False
    texts = [doc.text for doc in documents]
    ids = [doc.id for doc in documents]
    if not (all(texts) and "".join(texts).isascii() and "".join(ids).isascii()):
        return False
    if any(map(str.isspace, texts)):
        return False
    most = limits.max_document_bytes
    return max(map(len, texts)) + max(map(len, ids)) <= most or all(
        len(text) + len(id_) <= most for text, id_ in zip(texts, ids, strict=True)
    )


def _check_document(
    index: int, doc: Document, rank_fields: tuple[str, ...], limits: Limits, out: list[tuple[str, str]]
) -> None:
    where = f"documents[{index}]"
    if len(doc.fields) > limits.max_document_fields:
        out.append(
            (f"{where}.fields", f"has {len(doc.fields)} fields; at most {limits.max_document_fields} allowed")
        )
        return
    sizes = [_utf8(doc.id), _utf8(doc.text), *(_utf8(k) + _utf8(v) for k, v in doc.fields.items())]
    if min(sizes) < 0 or any(_utf8(k) < 0 for k in doc.fields):
        out.append((where, _NOT_TEXT))
        return
    size = sum(sizes)
    if size > limits.max_document_bytes:
        out.append((where, f"has {size} bytes; at most {limits.max_document_bytes} allowed"))
        return
    if render_text(doc, rank_fields) is None:
        what = f"none of rank_fields {list(rank_fields)}" if rank_fields else "no text"
        out.append((where, f"has {what} to rank"))


def _check_metadata(metadata: Mapping[str, str], limits: Limits, out: list[tuple[str, str]]) -> None:
    if len(metadata) > limits.max_metadata_entries:
        out.append(
            ("metadata", f"has {len(metadata)} entries; at most {limits.max_metadata_entries} allowed")
        )
        return
    sizes = [_utf8(k) for k in metadata] + [_utf8(v) for v in metadata.values()]
    if sizes and min(sizes) < 0:
        out.append(("metadata", _NOT_TEXT))
        return
    size = sum(sizes)
    if size > limits.max_metadata_bytes:
        out.append(("metadata", f"has {size} bytes; at most {limits.max_metadata_bytes} allowed"))


def _check_parameters(parameters: Mapping[str, Any], limits: Limits, out: list[tuple[str, str]]) -> None:
    if not parameters:
        return
    depth = _depth(parameters, limits.max_parameters_depth + 1)
    if depth > limits.max_parameters_depth:
        out.append(("parameters", f"nests deeper than {limits.max_parameters_depth} levels"))
        return
    try:
        text = json.dumps(parameters, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode())
    except (TypeError, ValueError):  # NaN or Infinity, a lone surrogate, a non-JSON value
        out.append(("parameters", "must be JSON: finite numbers and valid Unicode text"))
        return
    if size > limits.max_parameters_bytes:
        out.append(("parameters", f"has {size} bytes as JSON; at most {limits.max_parameters_bytes} allowed"))


def _depth(value: Any, stop: int) -> int:
    """Nesting depth of JSON-like `value` (scalars 0, {} or [] 1), counted no further than `stop`."""
    if not isinstance(value, dict | list) or stop <= 0:
        return 0
    children = value.values() if isinstance(value, dict) else value
    deepest = 0
    for child in children:
        if isinstance(child, dict | list):
            deepest = max(deepest, _depth(child, stop - 1))
            if deepest >= stop - 1:
                break
    return 1 + deepest


def _utf8(text: str) -> int:
    """UTF-8 size of `text`; -1 when it holds lone surrogates (possible from JSON, never valid text)."""
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return -1
