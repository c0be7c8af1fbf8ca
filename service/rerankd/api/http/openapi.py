"""The OpenAPI 3.1 document of the HTTP front door (served at /openapi.json), its schemas generated
from the body models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from rerankd import __version__
from rerankd.api.http.base import Dialect, Lookup
from rerankd.api.http.dialects import SHARED_PORT, Layout

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


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}


def _summary(dialect: Dialect[Any]) -> str:
    variants = dialect.variants()
    if not variants:
        return dialect.summary
    others = "; ".join(
        f"{when} the body and answer are {v.name}'s ({v.body.__name__}, {v.answer.__name__},"
        f" {v.error_body.__name__})"
        for when, v in variants
    )
    return f"{dialect.summary} {others[:1].upper()}{others[1:]}."


def _rerank(dialect: Dialect[Any], parameters: list[dict[str, Any]], out_headers: dict[str, Any]) -> Any:
    return {
        "operationId": dialect.operation_id,
        "summary": _summary(dialect),
        "parameters": parameters,
        "requestBody": {"required": True, "content": _ref(dialect.body)},
        "responses": {
            "200": {
                "description": "Results, best first.",
                "headers": out_headers,
                "content": _ref(dialect.answer),
            },
            "default": {
                "description": "An error, in this dialect's shape.",
                "content": _ref(dialect.error_body),
            },
        },
    }


def _lookup(lookup: Lookup, out_headers: dict[str, Any]) -> Any:
    ok: dict[str, Any] = {"description": lookup.summary, "headers": out_headers}
    if lookup.answer is not None:
        ok["content"] = _ref(lookup.answer)
    return {
        "operationId": lookup.operation_id,
        "summary": lookup.summary,
        "responses": {
            "200": ok,
            "default": {"description": "An error, in this dialect's shape.", "content": _ref(lookup.error)},
        },
    }


def _models(layout: Layout) -> list[type[BaseModel]]:
    """Every body model the listener's operations name, each once, in a stable order."""
    found: dict[str, type[BaseModel]] = {}
    for dialect, _ in layout:
        for each in (dialect, *(variant for _, variant in dialect.variants())):
            for model in (each.body, each.answer, each.error_body):
                found.setdefault(model.__name__, model)
        for lookup in dialect.lookups:
            for shape in (lookup.answer, lookup.error):
                if shape is not None:
                    found.setdefault(shape.__name__, shape)
    return list(found.values())


def openapi_document(layout: Layout = SHARED_PORT) -> dict[str, Any]:
    """OpenAPI 3.1 description of what one listener serves (dialects.py's table), schemas generated
    from the body models."""
    _, schema = models_json_schema(
        [(model, "validation") for model in _models(layout)], ref_template="#/components/schemas/{model}"
    )
    parameters = [
        {"name": name, "in": "header", "required": False, "description": text, "schema": {"type": "string"}}
        for name, text in _TRACE_HEADERS
    ]
    out_headers = {
        name: {"description": text, "schema": {"type": "string"}} for name, text in _RESPONSE_HEADERS.items()
    }
    paths: dict[str, Any] = {}
    for dialect, prefix in layout:
        paths[prefix + dialect.path] = {"post": _rerank(dialect, parameters, out_headers)}
        for lookup in dialect.lookups:
            paths[prefix + lookup.path] = {"get": _lookup(lookup, out_headers)}
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
        }
    }
    names = ", ".join(dialect.name for dialect, _ in layout)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rerankd HTTP API",
            "version": __version__,
            "description": f"Rerank endpoints compatible with these dialects: {names}.",
        },
        "paths": paths,
        "components": {"schemas": schema.get("$defs", {})},
    }
