"""The OpenAPI 3.1 document of the HTTP front door (served at /openapi.json), its schemas generated
from the body models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from rerankd import __version__
from rerankd.api.http.base import Dialect
from rerankd.api.http.bodies import (
    CohereError,
    CohereResponse,
    PineconeError,
    PineconeResponse,
    PortkeyError,
    PortkeyResponse,
    TeiError,
    TeiResponse,
)
from rerankd.api.http.dialects import COHERE_V1, COHERE_V2, DIALECTS, PINECONE, PORTKEY, TEI

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
