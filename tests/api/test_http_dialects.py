"""The one table of the HTTP front door (api/http/dialects.py): every listener's routes and its
/openapi.json come from it, so they cannot drift apart, and each document is valid OpenAPI 3.1."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from rerankd.api.http import bodies
from rerankd.api.http.dialects import DIALECTS, SHARED_PORT, TEI_PORT, Layout
from rerankd.api.http_api import create_app, openapi_document
from rerankd.api.pipeline import Pipeline
from rerankd.server import App
from starlette.routing import Route


def _routes(app: Any) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


@pytest.mark.parametrize("layout", [SHARED_PORT, TEI_PORT], ids=["shared-port", "tei-port"])
def test_each_listeners_routes_are_its_documents_operations(local_app: App, layout: Layout) -> None:
    app = create_app(Pipeline(local_app.router, local_app.settings), local_app.settings, layout=layout)
    doc = openapi_document(layout)
    validate(doc)  # OpenAPI 3.1, by the OpenAPI Initiative's schema
    assert _routes(app) == _operations(doc)


def test_the_shared_port_serves_every_dialect_at_its_path_and_tei_its_own_on_tei_port() -> None:
    shared = _operations(openapi_document(SHARED_PORT))
    assert {
        ("POST", "/v1/rerank"),
        ("POST", "/v2/rerank"),
        ("POST", "/portkey/v1/rerank"),
        ("POST", "/rerank"),
        ("POST", "/tei/rerank"),
        ("GET", "/tei/info"),
        ("GET", "/tei/health"),
    } <= shared
    assert _operations(openapi_document(TEI_PORT)) == {
        ("POST", "/rerank"),
        ("GET", "/info"),
        ("GET", "/health"),
        ("GET", "/openapi.json"),
    }


def test_every_declared_body_model_is_in_the_document() -> None:
    schemas = openapi_document()["components"]["schemas"]
    for dialect in DIALECTS:
        for model in (dialect.body, dialect.answer, dialect.error_body):
            assert model.__name__ in schemas, (dialect.name, model)
    assert bodies.TeiInfo.__name__ in schemas


async def test_the_served_document_is_valid_openapi_3_1(local_app: App) -> None:
    async with httpx.AsyncClient(base_url=f"http://{local_app.http_address}", timeout=10) as http:
        doc = (await http.get("/openapi.json")).json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
