"""Request limits: each refused with INVALID_ARGUMENT naming its field, and the gRPC receive size."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2
from rerankd import errors
from rerankd.config import Settings
from rerankd.domain import Document, RerankQuery
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc
from rerankd.validation import DEFAULT_LIMITS, Limits, receive_limit, validate

from tests.conftest import running_app
from tests.fakes.cohere import CONTRACT

SMALL = {
    "max_documents": 3,
    "max_document_bytes": 100,
    "max_query_bytes": 50,
    "max_document_fields": 2,
    "max_metadata_entries": 2,
    "max_metadata_bytes": 40,
    "max_parameters_depth": 2,
    "max_parameters_bytes": 60,
}


def base() -> pb.RerankRequest:
    return pb.RerankRequest(
        model=f"co/{CONTRACT.model}",
        query="apple",
        documents=[pb.Document(text="an apple"), pb.Document(text="x")],
    )


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _docs(request: pb.RerankRequest, *docs: pb.Document) -> None:
    del request.documents[:]
    request.documents.extend(docs)


CASES: list[tuple[str, Callable[[pb.RerankRequest], None], str]] = [
    ("documents", lambda r: _docs(r, *[pb.Document(text="a")] * 4), "documents"),
    (
        "document bytes",
        lambda r: _docs(r, pb.Document(text="a"), pb.Document(text="a" * 101)),
        "documents[1]",
    ),
    ("document bytes, not characters", lambda r: _docs(r, pb.Document(text="€" * 34)), "documents[0]"),
    (
        "document bytes count id and fields",
        lambda r: _docs(r, pb.Document(id="i" * 40, text="t" * 40, fields={"k": "v" * 20})),
        "documents[0]",
    ),
    ("query bytes", lambda r: setattr(r, "query", "q" * 51), "query"),
    (
        "fields per document",
        lambda r: _docs(r, pb.Document(text="a", fields={"a": "1", "b": "2", "c": "3"})),
        "documents[0].fields",
    ),
    ("rank_fields", lambda r: r.rank_fields.extend(["a", "b", "c"]), "rank_fields"),
    ("metadata entries", lambda r: r.metadata.update({"a": "1", "b": "2", "c": "3"}), "metadata"),
    ("metadata bytes", lambda r: r.metadata.update({"key": "v" * 38}), "metadata"),
    ("parameters depth", lambda r: r.parameters.CopyFrom(_struct({"a": {"b": {"c": 1}}})), "parameters"),
    ("parameters depth in lists", lambda r: r.parameters.CopyFrom(_struct({"a": [[1]]})), "parameters"),
    ("parameters size", lambda r: r.parameters.CopyFrom(_struct({"k": "v" * 60})), "parameters"),
    ("parameters NaN", lambda r: r.parameters.CopyFrom(_struct({"k": math.nan})), "parameters"),
    ("parameters Infinity", lambda r: r.parameters.CopyFrom(_struct({"k": [math.inf]})), "parameters"),
    ("model name", lambda r: setattr(r, "model", "m" * 300), "model"),
]


async def test_each_limit_is_refused_with_its_field_before_any_provider_call() -> None:
    with CONTRACT.fake() as fake:
        async with (
            running_app(
                local_enabled=False, http_enabled=False, providers={"co": CONTRACT.config(fake.url)}, **SMALL
            ) as app,
            grpc.aio.insecure_channel(app.addresses[0]) as channel,
        ):
            stub = pb_grpc.RerankServiceStub(channel)
            assert (await stub.Rerank(base(), timeout=10)).results  # the base request is fine
            fake.clear()
            for name, mutate, field in CASES:
                request = base()
                mutate(request)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Rerank(request, timeout=10)
                error = caught.value
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, name
                assert error.details().startswith(f"{field}:"), (name, error.details())
                assert _violations(error)[0].field == field, name
            assert fake.requests == []


async def test_a_request_over_the_receive_limit_is_refused_by_the_transport() -> None:
    limit = receive_limit(Limits.from_settings(Settings(**SMALL)), 64 * 1024 * 1024)
    assert limit < 100_000
    async with (
        running_app(local_enabled=False, http_enabled=False, **SMALL) as app,
        grpc.aio.insecure_channel(app.addresses[0]) as channel,
    ):
        request = base()
        request.query = "q" * limit
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.RerankServiceStub(channel).Rerank(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_default_limit_is_ten_thousand_documents() -> None:
    assert Settings().max_documents == DEFAULT_LIMITS.max_documents == 10_000
    async with (
        running_app(local_enabled=False, http_enabled=False) as app,
        grpc.aio.insecure_channel(app.addresses[0]) as channel,
    ):
        request = base()
        _docs(request, *[pb.Document(text="d")] * 10_001)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.RerankServiceStub(channel).Rerank(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("documents: has 10001 documents; at most 10000")


def test_receive_limit_follows_the_limits_up_to_the_ceiling() -> None:
    small = Limits(**SMALL)
    bigger = Limits(**{**SMALL, "max_documents": 30})
    assert receive_limit(small, 10**9) < receive_limit(bigger, 10**9)
    assert receive_limit(bigger, 10**9) > 30 * 100  # room for every document at its cap
    assert receive_limit(DEFAULT_LIMITS, 64 * 1024 * 1024) == 64 * 1024 * 1024


def _query(**changes: Any) -> RerankQuery:
    fields: dict[str, Any] = {"model": "m", "query": "q", "documents": [Document(text="t")]}
    fields.update(changes)
    return RerankQuery(**fields)


def test_validate_accepts_requests_at_every_limit() -> None:
    limits = Limits(**SMALL)
    validate(
        _query(
            query="q" * 50,
            documents=[Document(text="t" * 100)] * 3,
            metadata={"k": "v" * 19, "l": "w" * 19},
            parameters={"a": {"b": "c" * 40}},
        ),
        limits,
    )
    validate(_query(documents=[Document(text="t")] * 10_000))


def test_validate_refuses_text_with_lone_surrogates_from_json() -> None:
    for query, field in [
        (_query(query="a\ud800"), "query"),
        (_query(documents=[Document(text="b\udfff")]), "documents[0]"),
        (_query(metadata={"k\ud800": "v"}), "metadata"),
        (_query(parameters={"k": "\ud800"}), "parameters"),
    ]:
        with pytest.raises(errors.InvalidArgument) as caught:
            validate(query)
        assert caught.value.field_violations[0][0] == field


def test_validate_stops_at_twenty_violations() -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        validate(_query(documents=[Document(text=" ")] * 500))
    assert len(caught.value.field_violations) == 20
    assert caught.value.message.endswith("(and 19 more)")


def _violations(error: grpc.aio.AioRpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    bad = error_details_pb2.BadRequest()
    assert status_pb2.Status.FromString(raw).details[0].Unpack(bad)
    return list(bad.field_violations)
