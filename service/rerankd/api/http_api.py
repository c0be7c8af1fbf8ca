"""The HTTP/JSON front door: Cohere (v1, v2), Portkey, Pinecone and TEI rerank dialects over the
same pipeline and router as the gRPC servicer.

    POST /v1/rerank           Cohere v1 shape (Portkey's unified shape when x-portkey-* headers come)
    POST /v2/rerank           Cohere v2 shape (likewise)
    POST /portkey/v1/rerank   Portkey's unified shape, always
    POST /rerank              Pinecone Inference shape (Api-Key, X-Pinecone-Api-Version)
    POST /tei/rerank          Hugging Face text-embeddings-inference shape (bare array back)
    GET  /tei/info            TEI's model info; GET /tei/health: TEI's health check
    GET  /openapi.json        this API, described

With `tei_port` set, a second listener serves TEI's own paths (POST /rerank, GET /info, GET
/health), so a TEI client only changes the host. Each dialect declares its paths and body models
once (api/http/base.py); a listener's routes and its /openapi.json are generated from its layout
(api/http/dialects.py: SHARED_PORT, TEI_PORT).

Each dialect only maps its JSON to a RerankQuery and the Ranked answer (or a taxonomy error) back
to its own JSON; validation, deadlines, tracing and routing are api/pipeline.py's. Request and
trace ids come from the same headers as over gRPC (traceparent, x-request-id, x-trace-id and the
x-portkey-* aliases) and go back as x-request-id, x-trace-id and x-span-id response headers.
docs/http-api.md has the decisions (TEI raw_scores, usage units, model defaults) and curl examples.

This module is the entry point and re-exports what the server and callers use (the body models are
`bodies`); the code lives in the package `rerankd.api.http` (api/http/__init__.py lists its
modules): body models, the dialects, the app with its auth seam, the OpenAPI document, and
`HttpServer`, which runs the app with uvicorn on the server's own event loop, on its own port.
"""

from __future__ import annotations

from rerankd.api.http import bodies
from rerankd.api.http.app import Authorizer, RerankHttpApi, admit_everyone, create_app
from rerankd.api.http.base import Dialect
from rerankd.api.http.dialects import DIALECTS, SHARED_PORT, TEI_PORT, Layout
from rerankd.api.http.openapi import openapi_document
from rerankd.api.http.serving import HttpServer

__all__ = [
    "DIALECTS",
    "SHARED_PORT",
    "TEI_PORT",
    "Authorizer",
    "Dialect",
    "HttpServer",
    "Layout",
    "RerankHttpApi",
    "admit_everyone",
    "bodies",
    "create_app",
    "openapi_document",
]
