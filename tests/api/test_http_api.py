"""The HTTP/JSON front door over a real loopback server with the embedded model: the official Cohere
(ClientV2, Client) and Pinecone SDKs, the Portkey and TEI shapes, errors in each dialect, trace
headers, the auth seam, OpenAPI, and the server wiring (flags, drain)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import AsyncIterator, Mapping
from types import SimpleNamespace
from typing import Any

import cohere
import httpx
import jsonschema
import pinecone
import pytest
from pinecone import Pinecone
from rerankd import errors, tracing
from rerankd.api import http_api
from rerankd.api.http import bodies, dialects
from rerankd.api.pipeline import Pipeline
from rerankd.config import ProviderConfig
from rerankd.domain import Scored, Usage
from rerankd.server import App

from tests.conftest import running_app
from tests.examples import APPLE_BEST, APPLE_DOCS, APPLE_QUERY, FRANCE_BEST, FRANCE_DOCS, FRANCE_QUERY
from tests.support import free_port, server_process

SEEDS = [(APPLE_QUERY, APPLE_DOCS, APPLE_BEST), (FRANCE_QUERY, FRANCE_DOCS, FRANCE_BEST)]
LOCAL_MODEL = "ms-marco-MiniLM-L-12-v2"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
HEX16 = re.compile(r"^[0-9a-f]{16}$")


@pytest.fixture
def base_url(local_app: App) -> str:
    assert local_app.http_port > 0
    return f"http://{local_app.http_address}"


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield client


def best_first(scores: list[float]) -> None:
    assert scores == sorted(scores, reverse=True)


# -- The official SDKs ---------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "docs", "best"), SEEDS)
async def test_cohere_client_v2_ranks_the_seed_examples(base_url: str, query, docs, best) -> None:
    co = cohere.ClientV2(api_key="test-key", base_url=base_url, timeout=30)
    reply = await asyncio.to_thread(co.rerank, model="default", query=query, documents=docs)
    assert reply.results[0].index == best
    assert sorted(r.index for r in reply.results) == list(range(len(docs)))
    best_first([r.relevance_score for r in reply.results])
    assert all(0.0 <= r.relevance_score <= 1.0 for r in reply.results)
    assert reply.meta.api_version.version == "2"
    assert reply.meta.billed_units.search_units == 0  # the embedded model bills nothing
    assert reply.meta.tokens.input_tokens > 0
    top = await asyncio.to_thread(co.rerank, model=LOCAL_MODEL, query=query, documents=docs, top_n=1)
    assert [r.index for r in top.results] == [best]


@pytest.mark.parametrize(("query", "docs", "best"), SEEDS)
async def test_cohere_client_v1_ranks_the_seed_examples(base_url: str, query, docs, best) -> None:
    co = cohere.Client(api_key="test-key", base_url=base_url, timeout=30)
    reply = await asyncio.to_thread(co.rerank, query=query, documents=docs, return_documents=True, top_n=2)
    assert reply.results[0].index == best and len(reply.results) == 2
    assert reply.results[0].document.text == docs[best]
    assert reply.meta.api_version.version == "1"
    plain = await asyncio.to_thread(co.rerank, query=query, documents=docs)
    assert plain.results[0].index == best and plain.results[0].document is None


async def test_cohere_client_v1_ranks_object_documents_on_rank_fields(base_url: str) -> None:
    co = cohere.Client(api_key="test-key", base_url=base_url, timeout=30)
    docs = [{"title": f"doc {i}", "body": text} for i, text in enumerate(FRANCE_DOCS)]
    reply = await asyncio.to_thread(
        co.rerank, query=FRANCE_QUERY, documents=docs, rank_fields=["body"], return_documents=True
    )
    assert reply.results[0].index == FRANCE_BEST
    assert reply.results[0].document.model_dump()["body"] == FRANCE_DOCS[FRANCE_BEST]  # whole object echoed


@pytest.mark.parametrize(("query", "docs", "best"), SEEDS)
async def test_pinecone_sdk_inference_rerank_ranks_the_seed_examples(
    base_url: str, query, docs, best
) -> None:
    pc = Pinecone(api_key="test-key", host=base_url)
    reply = await asyncio.to_thread(pc.inference.rerank, model="default", query=query, documents=docs)
    assert reply.data[0].index == best
    assert reply.data[0].document["text"] == docs[best]
    best_first([d.score for d in reply.data])
    assert reply.model == LOCAL_MODEL
    assert reply.usage.rerank_units == 0
    objects = [{"id": f"d{i}", "summary": text} for i, text in enumerate(docs)]
    ranked = await asyncio.to_thread(
        pc.inference.rerank,
        model="default",
        query=query,
        documents=objects,
        rank_fields=["summary"],
        top_n=1,
        return_documents=False,
    )
    assert [d.index for d in ranked.data] == [best] and ranked.data[0].document is None


# -- Portkey and TEI -----------------------------------------------------------------------------


async def test_portkey_shape_on_portkey_headers_and_on_its_path(http: httpx.AsyncClient) -> None:
    body = {"model": "default", "query": APPLE_QUERY, "documents": APPLE_DOCS, "return_documents": True}
    for path, headers in [
        ("/v1/rerank", {"x-portkey-trace-id": "trace-abc-1"}),
        ("/v2/rerank", {"x-portkey-api-key": "pk-test-1234567890", "x-portkey-provider": "cohere"}),
        ("/portkey/v1/rerank", {}),
    ]:
        reply = await http.post(path, json=body, headers=headers)
        assert reply.status_code == 200, reply.text
        data = reply.json()
        bodies.PortkeyResponse.model_validate(data)
        assert data["object"] == "list" and data["provider"] == "local" and data["model"] == LOCAL_MODEL
        assert data["results"][0]["index"] == APPLE_BEST
        assert data["results"][0]["document"] == {"text": APPLE_DOCS[APPLE_BEST]}
        assert data["id"] == reply.headers["x-request-id"]
        echoed = reply.headers["x-portkey-trace-id"]
        assert echoed == headers.get("x-portkey-trace-id", reply.headers["x-trace-id"])


async def test_cohere_shape_without_portkey_headers(http: httpx.AsyncClient) -> None:
    reply = await http.post("/v2/rerank", json={"query": FRANCE_QUERY, "documents": FRANCE_DOCS})
    data = reply.json()
    bodies.CohereResponse.model_validate(data)
    assert "object" not in data and "x-portkey-trace-id" not in reply.headers
    assert data["results"][0]["index"] == FRANCE_BEST


async def test_tei_shape_scores_text_and_headers(http: httpx.AsyncClient) -> None:
    reply = await http.post("/tei/rerank", json={"query": FRANCE_QUERY, "texts": FRANCE_DOCS})
    assert reply.status_code == 200
    ranks = reply.json()
    bodies.TeiResponse.model_validate(ranks)
    assert isinstance(ranks, list) and ranks[0]["index"] == FRANCE_BEST
    assert all("text" not in r for r in ranks) and all(0 <= r["score"] <= 1 for r in ranks)
    assert int(reply.headers["x-compute-tokens"]) > 0
    assert int(reply.headers["x-compute-characters"]) == sum(len(t) for t in FRANCE_DOCS)
    with_text = (
        await http.post(
            "/tei/rerank", json={"query": FRANCE_QUERY, "texts": FRANCE_DOCS, "return_text": True}
        )
    ).json()
    assert [r["text"] for r in with_text] == [FRANCE_DOCS[r["index"]] for r in with_text]


async def test_tei_raw_scores_are_the_embedded_models_logits(http: httpx.AsyncClient) -> None:
    calibrated = (await http.post("/tei/rerank", json={"query": FRANCE_QUERY, "texts": FRANCE_DOCS})).json()
    raw = (
        await http.post("/tei/rerank", json={"query": FRANCE_QUERY, "texts": FRANCE_DOCS, "raw_scores": True})
    ).json()
    assert [r["index"] for r in raw] == [r["index"] for r in calibrated]
    by_index = {r["index"]: r["score"] for r in calibrated}
    for rank in raw:
        assert 1.0 / (1.0 + math.exp(-rank["score"])) == pytest.approx(by_index[rank["index"]], rel=1e-9)
    assert raw[0]["score"] > 0 > raw[-1]["score"]  # logits, not probabilities


async def test_tei_raw_scores_are_refused_for_a_hosted_route() -> None:
    hosted = ProviderConfig(
        kind="cohere", api_key="test-key", base_url="http://127.0.0.1:9", models=["rerank-v3.5"]
    )
    routes = {"default": {"targets": [{"provider": "co", "model": "rerank-v3.5"}]}}
    async with (
        running_app(local_enabled=False, providers={"co": hosted}, routes=routes) as app,
        httpx.AsyncClient(base_url=f"http://{app.http_address}", timeout=10) as client,
    ):
        reply = await client.post("/tei/rerank", json={"query": "q", "texts": ["a", "b"], "raw_scores": True})
    assert reply.status_code == 422
    assert reply.json()["error_type"] == "Validation"
    assert reply.json()["error"].startswith("raw_scores: ") and "co/rerank-v3.5" in reply.json()["error"]


# -- Errors, in each dialect ---------------------------------------------------------------------

BAD = {"model": "default", "query": " ", "documents": []}


async def test_bad_request_in_cohere_shape_through_both_sdks(base_url: str) -> None:
    co2 = cohere.ClientV2(api_key="test-key", base_url=base_url, timeout=30)
    with pytest.raises(cohere.BadRequestError) as caught:
        await asyncio.to_thread(co2.rerank, model="default", query=" ", documents=[])
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": "query: must not be empty or only whitespace; documents: must hold at least one document"
    }
    co1 = cohere.Client(api_key="test-key", base_url=base_url, timeout=30)
    with pytest.raises(cohere.NotFoundError) as missing:
        await asyncio.to_thread(co1.rerank, model="no-such-model", query="q", documents=["a"])
    assert set(missing.value.body) == {"message"} and "no-such-model" in missing.value.body["message"]


async def test_bad_request_in_pinecone_shape_through_the_sdk(base_url: str) -> None:
    pc = Pinecone(api_key="test-key", host=base_url)
    docs = [{"id": "a", "text": "Paris."}, {"id": "b", "title": "no text here"}]
    with pytest.raises(pinecone.errors.ApiError) as caught:
        await asyncio.to_thread(pc.inference.rerank, model="default", query="capital", documents=docs)
    err = caught.value
    assert err.status_code == 400 and err.error_code == "INVALID_ARGUMENT"
    bodies.PineconeError.model_validate(err.body)
    assert err.body["status"] == 400
    assert err.body["error"]["details"]["field_violations"] == [
        {"field": "documents[1]", "description": "has none of rank_fields ['text'] to rank"}
    ]
    with pytest.raises(pinecone.errors.NotFoundError) as missing:
        await asyncio.to_thread(pc.inference.rerank, model="no-such-model", query="q", documents=["a"])
    assert missing.value.body["error"]["code"] == "NOT_FOUND" and missing.value.body["status"] == 404


async def test_bad_request_in_portkey_shape(http: httpx.AsyncClient) -> None:
    reply = await http.post("/portkey/v1/rerank", json={**BAD, "top_n": 0})
    assert reply.status_code == 400
    data = reply.json()
    bodies.PortkeyError.model_validate(data)
    assert data == {
        "error": {
            "message": "top_n: input should be greater than or equal to 1",
            "type": "invalid_argument",
            "param": "top_n",
            "code": "INVALID_ARGUMENT",
        },
        "provider": "rerankd",
    }


async def test_bad_requests_in_tei_shape(http: httpx.AsyncClient) -> None:
    empty = await http.post("/tei/rerank", json={"query": "q", "texts": []})
    assert (empty.status_code, empty.json()) == (
        400,
        {"error": "texts: must not be empty", "error_type": "Empty"},
    )
    blank = await http.post("/tei/rerank", json={"query": "q", "texts": ["fine", "  "]})
    assert blank.status_code == 422
    assert blank.json() == {"error": "texts[1]: has no text to rank", "error_type": "Validation"}
    typed = await http.post("/tei/rerank", json={"query": "q", "texts": ["fine", 7]})
    assert typed.status_code == 422 and typed.json()["error"] == "texts[1]: input should be a valid string"
    left = await http.post("/tei/rerank", json={"query": "q", "texts": ["a"], "truncation_direction": "left"})
    assert left.status_code == 422 and left.json()["error"].startswith("truncation_direction: ")


@pytest.mark.parametrize(
    ("path", "content", "expected"),
    [
        (
            "/v2/rerank",
            b"{not json",
            {"message": "body: is not valid JSON (key must be a string at line 1 column 2)"},
        ),
        ("/v1/rerank", b"[1, 2]", {"message": "body: must be a JSON object"}),
        (
            "/v1/rerank",
            b'{"documents": ["a", 3]}',
            {"message": "query: is required; documents[1]: must be a string or an object"},
        ),
    ],
)
async def test_malformed_bodies_name_the_field(
    http: httpx.AsyncClient, path: str, content: bytes, expected
) -> None:
    reply = await http.post(path, content=content, headers={"content-type": "application/json"})
    assert (reply.status_code, reply.json()) == (400, expected)


@pytest.mark.parametrize(
    ("path", "field", "value", "expected"),
    [
        ("/v2/rerank", "top_n", "1", "top_n: input should be a valid integer"),
        ("/v2/rerank", "top_n", True, "top_n: input should be a valid integer"),
        ("/rerank", "top_n", "2", "top_n: input should be a valid integer"),
        ("/v1/rerank", "return_documents", "yes", "return_documents: input should be a valid boolean"),
        ("/portkey/v1/rerank", "truncation", "false", "truncation: input should be a valid boolean"),
        ("/tei/rerank", "truncate", "no", "truncate: input should be a valid boolean"),
        ("/tei/rerank", "raw_scores", 1, "raw_scores: input should be a valid boolean"),
    ],
)
async def test_a_value_of_the_wrong_json_type_is_refused_not_coerced(
    http: httpx.AsyncClient, path: str, field: str, value: Any, expected: str
) -> None:
    body: dict[str, Any] = {"query": "q", field: value}
    body["texts" if path.startswith("/tei") else "documents"] = ["a", "b"]
    reply = await http.post(path, json=body)
    assert reply.status_code == (422 if path.startswith("/tei") else 400), reply.text
    assert expected in reply.text


async def test_an_integer_is_a_valid_float_field(http: httpx.AsyncClient) -> None:
    reply = await http.post("/portkey/v1/rerank", json={"query": "q", "documents": ["a"], "priority": 1})
    assert reply.status_code == 200, reply.text


async def test_a_body_declared_as_anything_but_json_is_a_415(http: httpx.AsyncClient) -> None:
    body = b'{"query": "q", "documents": ["a"]}'
    for kind in ("text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data"):
        reply = await http.post("/v2/rerank", content=body, headers={"content-type": kind})
        media = kind.split(";")[0]
        assert (reply.status_code, reply.json()) == (
            415,
            {"message": f"content-type: is '{media}'; the body must be JSON (application/json)"},
        )
    tei = await http.post(
        "/tei/rerank", content=b'{"query": "q", "texts": ["a"]}', headers={"content-type": "text/plain"}
    )
    assert tei.status_code == 415 and tei.json()["error_type"] == "Validation"
    for kind in ("application/json; charset=utf-8", "application/vnd.api+json", None):
        headers = {"content-type": kind} if kind else {}
        reply = await http.post("/v2/rerank", content=body, headers=headers)
        assert reply.status_code == 200, (kind, reply.text)


async def test_unknown_routes_and_methods_answer_json(http: httpx.AsyncClient) -> None:
    missing = await http.post("/v3/rerank", json={})
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found: POST /v3/rerank"})
    wrong = await http.get("/v2/rerank")
    assert wrong.status_code == 405 and "message" in wrong.json()


async def test_a_body_over_the_limit_is_refused(local_app: App) -> None:
    settings = local_app.settings.model_copy(update={"max_receive_message_bytes": 1024})
    app = http_api.create_app(Pipeline(local_app.router, settings), settings)
    body = {"query": "q", "documents": ["x" * 2000]}
    tei_body = {"query": "q", "texts": ["x" * 2000]}

    async def chunked() -> AsyncIterator[bytes]:  # no content-length: the limit is counted as it comes
        for _ in range(4):
            yield b" " * 512

    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        reply = await client.post("/v2/rerank", json=body)
        pinecone_reply = await client.post("/rerank", json=body)
        tei_reply = await client.post("/tei/rerank", json=tei_body)
        streamed = await client.post(
            "/v2/rerank", content=chunked(), headers={"content-type": "application/json"}
        )
    assert (reply.status_code, reply.json()) == (413, {"message": "body: is larger than 1024 bytes"})
    assert (streamed.status_code, streamed.json()) == (413, {"message": "body: is larger than 1024 bytes"})
    assert pinecone_reply.status_code == 413 and pinecone_reply.json()["status"] == 413
    assert pinecone_reply.json()["error"]["details"]["field_violations"] == [
        {"field": "body", "description": "is larger than 1024 bytes"}
    ]
    assert (tei_reply.status_code, tei_reply.json()) == (
        413,
        {"error": "body: is larger than 1024 bytes", "error_type": "Validation"},
    )


def _failures() -> list[errors.RerankError]:
    return [
        errors.invalid("documents[3]", "has no text to rank"),
        errors.NotFound("model 'x' is not served here", field_violations=[("model", "unknown model 'x'")]),
        errors.Unauthenticated("missing credentials"),
        errors.PermissionDenied("caller 'a' may not use model 'x'", reason="MODEL_NOT_ALLOWED"),
        errors.ResourceExhausted("too many requests", retry_after=1.5, provider="cohere"),
        errors.Unavailable("cohere: 503 from upstream, key sk-abcdefghijklmnopqrstu", provider="cohere"),
        errors.DeadlineExceeded("deadline exceeded after 2 attempt(s)"),
        errors.ProviderMisconfigured("pinecone refused our key", provider="pinecone"),
        errors.Internal("internal error (request id r1)"),
    ]


EXPECTED_STATUS = {
    "cohere-v1": [400, 404, 401, 403, 429, 503, 504, 502, 500],
    "cohere-v2": [400, 404, 401, 403, 429, 503, 504, 502, 500],
    "portkey": [400, 404, 401, 403, 429, 503, 504, 502, 500],
    "pinecone": [400, 404, 401, 403, 429, 503, 504, 502, 500],
    "tei": [422, 404, 401, 403, 429, 503, 504, 502, 500],
}
PINECONE_CODES = [
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "FAILED_PRECONDITION",
    "INTERNAL",
]
TEI_TYPES = ["Validation", "Backend", "Backend", "Backend", "Overloaded", "Unhealthy"] + ["Backend"] * 3


@pytest.mark.parametrize("dialect", http_api.DIALECTS, ids=lambda d: d.name)
def test_every_taxonomy_error_maps_to_the_dialects_status_and_body(dialect: http_api.Dialect[Any]) -> None:
    shapes = {
        "cohere-v1": bodies.CohereError,
        "cohere-v2": bodies.CohereError,
        "portkey": bodies.PortkeyError,
        "pinecone": bodies.PineconeError,
        "tei": bodies.TeiError,
    }
    for position, failure in enumerate(_failures()):
        status, body = dialect.error(dialect.presented(failure))
        assert status == EXPECTED_STATUS[dialect.name][position], failure
        shapes[dialect.name].model_validate(body)
        text = str(body)
        assert "sk-abcdefghijklmnopqrstu" not in text  # scrubbed
        if dialect.name == "pinecone":
            assert body["error"]["code"] == PINECONE_CODES[position] and body["status"] == status
        elif dialect.name == "portkey":
            assert body["error"]["code"] == PINECONE_CODES[position]
            assert body["provider"] == (failure.provider or "rerankd")
        elif dialect.name == "tei":
            assert body["error_type"] == TEI_TYPES[position]
        else:
            assert set(body) == {"message"}


def test_tei_names_texts_where_the_domain_says_documents() -> None:
    renamed = dialects.TEI.presented(errors.invalid("documents[3]", "has no text to rank"))
    assert renamed.field_violations == [("texts[3]", "has no text to rank")]
    assert renamed.message == "texts[3]: has no text to rank"
    assert dialects.COHERE_V2.presented(errors.invalid("documents[3]", "x")).field_violations == [
        ("documents[3]", "x")
    ]


async def test_retry_after_is_sent_with_a_retryable_error(local_app: App) -> None:
    async def overloaded(headers: Mapping[str, str]) -> None:
        raise errors.ResourceExhausted("slow down", retry_after=1.2)

    app = http_api.create_app(
        Pipeline(local_app.router, local_app.settings), local_app.settings, authorize=overloaded
    )
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        reply = await client.post("/rerank", json={"query": "q", "documents": ["a"]})
    assert reply.status_code == 429 and reply.headers["retry-after"] == "2"
    assert reply.json()["error"]["code"] == "RESOURCE_EXHAUSTED"


# -- Trace headers -------------------------------------------------------------------------------


async def test_traceparent_and_request_id_are_echoed(http: httpx.AsyncClient) -> None:
    headers = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01", "x-request-id": "caller-req-7"}
    for path, body in [
        ("/v2/rerank", {"query": FRANCE_QUERY, "documents": FRANCE_DOCS}),
        ("/rerank", {"query": FRANCE_QUERY, "documents": FRANCE_DOCS}),
        ("/tei/rerank", {"query": FRANCE_QUERY, "texts": FRANCE_DOCS}),
        ("/v2/rerank", BAD),  # errors carry the ids too
    ]:
        reply = await http.post(path, json=body, headers=headers)
        assert reply.headers["x-trace-id"] == TRACE_ID, path
        assert reply.headers["x-request-id"] == "caller-req-7"
        span = reply.headers["x-span-id"]
        assert HEX16.match(span) and span != CALLER_SPAN  # the server's own span, child of the caller's
    ok = await http.post(
        "/v2/rerank", json={"query": FRANCE_QUERY, "documents": FRANCE_DOCS}, headers=headers
    )
    assert ok.json()["id"] == "caller-req-7"
    assert ok.headers["x-provider"] == "local" and ok.headers["x-attempts"] == "1"


async def test_portkey_trace_headers_set_the_trace(http: httpx.AsyncClient) -> None:
    uuid = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
    reply = await http.post(
        "/v1/rerank",
        json={"query": FRANCE_QUERY, "documents": FRANCE_DOCS},
        headers={
            "x-portkey-trace-id": uuid,
            "x-portkey-span-id": CALLER_SPAN,
            "x-portkey-parent-span-id": "1111111111111111",
            "x-portkey-span-name": "retrieve",
            "x-portkey-metadata": '{"_user": "u-1", "tenant": 42}',
        },
    )
    assert reply.status_code == 200
    assert reply.headers["x-portkey-trace-id"] == uuid  # verbatim, as Portkey echoes it
    assert reply.headers["x-trace-id"] == TRACE_ID  # the same id, as the 32-hex form providers get
    generated = await http.post(
        "/v1/rerank", json={"query": "q", "documents": ["a"]}, headers={"x-portkey-span-name": "s"}
    )
    assert generated.headers["x-portkey-trace-id"] == generated.headers["x-trace-id"]


def test_metadata_headers_become_string_metadata() -> None:
    assert tracing.header_metadata(
        {"x-portkey-metadata": '{"_user": "u", "n": 4, "ok": true, "skip": null}'}
    ) == {
        "_user": "u",
        "n": "4",
        "ok": "true",
    }
    assert tracing.header_metadata({"x-metadata": '{"a": "b"}', "x-portkey-metadata": '{"c": "d"}'}) == {
        "a": "b"
    }
    assert tracing.header_metadata({"x-metadata": ""}) == {}
    for malformed in ("not json", "[1, 2]", '"text"'):
        with pytest.raises(errors.InvalidArgument, match="x-metadata"):
            tracing.header_metadata({"x-metadata": malformed})


async def test_malformed_metadata_header_is_a_bad_request(http: httpx.AsyncClient) -> None:
    reply = await http.post(
        "/v2/rerank", json={"query": "q", "documents": ["a"]}, headers={"x-metadata": "{not json"}
    )
    assert reply.status_code == 400 and "x-metadata" in reply.json()["message"]


async def test_trace_and_request_ids_reach_the_pipeline(local_app: App) -> None:
    seen: list[Any] = []

    class Recording(Pipeline):
        async def rerank(self, call, query, time_remaining=None, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(query)
            return await super().rerank(call, query, time_remaining, **kwargs)

    app = http_api.create_app(Recording(local_app.router, local_app.settings), local_app.settings)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        reply = await client.post(
            "/rerank",
            json={"query": FRANCE_QUERY, "documents": FRANCE_DOCS},
            headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01", "x-metadata": '{"team": "search"}'},
        )
    assert reply.status_code == 200
    (query,) = seen
    assert query.trace.trace_id == TRACE_ID and query.trace.parent_span_id == CALLER_SPAN
    assert query.trace.span_id == reply.headers["x-span-id"]
    assert query.request_id == reply.headers["x-request-id"]
    assert dict(query.metadata) == {"team": "search"}


# -- Auth seam, cancellation, OpenAPI ------------------------------------------------------------


async def test_the_auth_seam_sees_headers_and_refuses_in_each_dialect(local_app: App) -> None:
    seen: list[dict[str, str]] = []

    async def refuse(headers: Mapping[str, str]) -> None:
        seen.append(dict(headers))
        raise errors.Unauthenticated("invalid API key")

    app = http_api.create_app(
        Pipeline(local_app.router, local_app.settings), local_app.settings, authorize=refuse
    )
    body = {"query": "q", "documents": ["a"], "texts": ["a"]}
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        replies = {
            path: await client.post(
                path, json=body, headers={"authorization": "Bearer t0k", "api-key": "k3y"}
            )
            for path in ("/v1/rerank", "/v2/rerank", "/portkey/v1/rerank", "/rerank", "/tei/rerank")
        }
    assert all(r.status_code == 401 for r in replies.values())
    assert replies["/v2/rerank"].json() == {"message": "invalid API key"}
    assert replies["/rerank"].json() == {
        "error": {"code": "UNAUTHENTICATED", "message": "invalid API key"},
        "status": 401,
    }
    assert replies["/portkey/v1/rerank"].json()["error"]["code"] == "UNAUTHENTICATED"
    assert replies["/tei/rerank"].json() == {"error": "invalid API key", "error_type": "Backend"}
    assert all(h["authorization"] == "Bearer t0k" and h["api-key"] == "k3y" for h in seen)


async def test_default_authorizer_admits_everyone() -> None:
    assert await http_api.admit_everyone({}) is None
    assert await http_api.admit_everyone({"authorization": "Bearer whatever"}) is None


async def test_a_client_that_disconnects_cancels_its_request(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rerankd.access")
    docs = [f"Passage {i} describes the bridges, rivers and old town of a European city." for i in range(600)]
    async with httpx.AsyncClient(base_url=base_url, timeout=0.5) as client:
        with pytest.raises(httpx.TimeoutException):
            await client.post(
                "/v2/rerank", json={"query": "bridges", "documents": docs}, headers={"x-request-id": "gone-1"}
            )
    for _ in range(100):
        records = [getattr(r, "access", {}) for r in caplog.records if r.name == "rerankd.access"]
        if any(a.get("request_id") == "gone-1" for a in records):
            break
        await asyncio.sleep(0.05)
    (record,) = [a for a in records if a.get("request_id") == "gone-1"]
    assert (
        record["status"] == "CANCELLED"
        and record["method"] == "http/cohere-v2"
        and record["documents"] == 600
    )
    assert record["latency_ms"] < 3000  # 600 documents take several seconds to score: it was stopped


async def test_openapi_document_describes_every_endpoint_and_the_answers(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/v1/rerank",
        "/v2/rerank",
        "/portkey/v1/rerank",
        "/rerank",
        "/tei/rerank",
        "/tei/info",
        "/tei/health",
        "/openapi.json",
    }
    params = {p["name"] for p in doc["paths"]["/rerank"]["post"]["parameters"]}
    assert {"traceparent", "x-request-id", "x-portkey-trace-id", "x-portkey-metadata"} <= params

    def check(instance: Any, name: str) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        jsonschema.Draft202012Validator(schema).validate(instance)

    answers = [
        (
            "/v1/rerank",
            {"query": "q", "documents": ["a", {"text": "b"}], "return_documents": True},
            {},
            "CohereResponse",
        ),
        ("/v2/rerank", {"query": "q", "documents": ["a"]}, {}, "CohereResponse"),
        ("/v2/rerank", {"query": "q", "documents": ["a"]}, {"x-portkey-trace-id": "t"}, "PortkeyResponse"),
        ("/rerank", {"query": "q", "documents": [{"id": "1", "text": "a"}]}, {}, "PineconeResponse"),
        ("/tei/rerank", {"query": "q", "texts": ["a"], "return_text": True}, {}, "TeiResponse"),
        ("/v2/rerank", BAD, {}, "CohereError"),
        ("/portkey/v1/rerank", BAD, {}, "PortkeyError"),
        ("/rerank", BAD, {}, "PineconeError"),
        ("/tei/rerank", {"query": "q", "texts": []}, {}, "TeiError"),
    ]
    for path, body, headers, name in answers:
        check(
            body,
            doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit(
                "/", 1
            )[1],
        )
        check((await http.post(path, json=body, headers=headers)).json(), name)
    info = doc["paths"]["/tei/info"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    check((await http.get("/tei/info")).json(), info["$ref"].rsplit("/", 1)[1])
    with pytest.raises(jsonschema.ValidationError):
        check({"results": []}, "CohereResponse")


# -- Wiring: settings, CLI, drain ----------------------------------------------------------------


async def test_http_can_be_turned_off() -> None:
    async with running_app(local_enabled=False, http_enabled=False) as app:
        assert app.http_server is None and app.http_port == 0 and app.http_address == ""


async def test_http_binds_its_own_port_and_drains() -> None:
    async with running_app(local_enabled=False, routes={}) as app:
        assert app.http_port not in (0, *app.ports)
        async with httpx.AsyncClient(base_url=f"http://{app.http_address}", timeout=10) as client:
            reply = await client.post("/v2/rerank", json={"query": "q", "documents": ["a"]})
            assert reply.status_code == 404  # nothing serves `default` without the local model
        port = app.http_port
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=2) as client:
            await client.post(f"http://127.0.0.1:{port}/v2/rerank", json={})


def test_rerankd_serve_flags_put_the_http_api_on_its_port(tmp_path) -> None:
    port = free_port()
    with server_process("--http-port", str(port), tmp_path=tmp_path) as server:
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v2/rerank",
            json={"model": "default", "query": FRANCE_QUERY, "documents": FRANCE_DOCS},
            timeout=30,
        )
        assert reply.status_code == 200 and reply.json()["results"][0]["index"] == FRANCE_BEST
        server.terminate()
        assert server.process.wait(15) == 0
    assert f"HTTP API on http://127.0.0.1:{port}" in server.log()
    assert FRANCE_DOCS[0] not in server.log()  # no document text in logs


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """`app` on its own loopback port for one test; yields the base URL."""
    server = http_api.HttpServer(app, "127.0.0.1", 0)
    server.bind()
    await server.start(grace=0.5)
    try:
        yield f"http://{server.address}"
    finally:
        await server.stop(0.5)


async def test_a_cached_answer_is_marked_as_over_grpc(local_app: App) -> None:
    class Cached(Pipeline):
        async def rerank(self, call, query, time_remaining=None, **kwargs):  # type: ignore[no-untyped-def]
            scored = [Scored(i, 1.0 / (i + 1)) for i in range(len(query.documents))]
            return SimpleNamespace(
                results=scored, usage=Usage(), provider="local", model=LOCAL_MODEL, attempts=[], cache="hit"
            )

    app = http_api.create_app(Cached(local_app.router, local_app.settings), local_app.settings)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        reply = await client.post("/v2/rerank", json={"query": "q", "documents": ["a", "b"]})
    assert reply.status_code == 200 and reply.headers["x-cache"] == "hit"
    assert reply.headers["x-attempts"] == "0" and [r["index"] for r in reply.json()["results"]] == [0, 1]
