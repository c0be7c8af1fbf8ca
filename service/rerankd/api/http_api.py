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

This module is the entry point and re-exports the public names; the code lives in the package
`rerankd.api.http` (api/http/__init__.py lists its modules): body models, the dialects, the app
with its auth seam, the OpenAPI document, and `HttpServer`, which runs the app with uvicorn on the
server's own event loop, on its own port.
"""

from __future__ import annotations

from rerankd.api.http.app import Authorizer, RerankHttpApi, admit_everyone, create_app
from rerankd.api.http.base import Dialect
from rerankd.api.http.bodies import (
    CohereApiVersion,
    CohereBilledUnits,
    CohereError,
    CohereMeta,
    CohereResponse,
    CohereResult,
    CohereTokens,
    CohereV1Request,
    CohereV2Request,
    ObjectDocument,
    PassageOut,
    PineconeError,
    PineconeErrorDetail,
    PineconeRanked,
    PineconeRequest,
    PineconeResponse,
    PineconeUsage,
    PortkeyError,
    PortkeyErrorDetail,
    PortkeyRequest,
    PortkeyResponse,
    PortkeyUsage,
    StringOrObject,
    TeiError,
    TeiRank,
    TeiRequest,
    TeiResponse,
)
from rerankd.api.http.cohere import CohereV1, CohereV2, Portkey
from rerankd.api.http.dialects import COHERE_V1, COHERE_V2, DIALECTS, PINECONE, PORTKEY, TEI
from rerankd.api.http.openapi import openapi_document
from rerankd.api.http.pinecone import Pinecone
from rerankd.api.http.serving import HttpServer
from rerankd.api.http.tei import Tei

__all__ = [
    "COHERE_V1",
    "COHERE_V2",
    "DIALECTS",
    "PINECONE",
    "PORTKEY",
    "TEI",
    "Authorizer",
    "CohereApiVersion",
    "CohereBilledUnits",
    "CohereError",
    "CohereMeta",
    "CohereResponse",
    "CohereResult",
    "CohereTokens",
    "CohereV1",
    "CohereV1Request",
    "CohereV2",
    "CohereV2Request",
    "Dialect",
    "HttpServer",
    "ObjectDocument",
    "PassageOut",
    "Pinecone",
    "PineconeError",
    "PineconeErrorDetail",
    "PineconeRanked",
    "PineconeRequest",
    "PineconeResponse",
    "PineconeUsage",
    "Portkey",
    "PortkeyError",
    "PortkeyErrorDetail",
    "PortkeyRequest",
    "PortkeyResponse",
    "PortkeyUsage",
    "RerankHttpApi",
    "StringOrObject",
    "Tei",
    "TeiError",
    "TeiRank",
    "TeiRequest",
    "TeiResponse",
    "admit_everyone",
    "create_app",
    "openapi_document",
]
