"""Caller authentication: the token file, the checks, and the live gRPC and HTTP front doors."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from rerankd import auth, errors, logs, metrics
from rerankd.api.grpc_api import SERVICE
from rerankd.auth import ANONYMOUS, Authenticator, TokenFileError, TokenStore, parse_tokens
from rerankd.server import App
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.conftest import running_app
from tests.fakes.cohere import CONTRACT

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-fedcba9876543210"
BOB_OLD = "bob-token-old-00000000000000"
TOKENS = f"""\
# caller: token
alice: {ALICE}
bob: {BOB}
bob: {BOB_OLD}   # rotated out next week
"""


def write_tokens(tmp_path: Path, text: str = TOKENS) -> Path:
    path = tmp_path / "tokens"
    path.write_text(text)
    return path


# -- the token file --------------------------------------------------------------------------------


def test_parse_tokens_reads_names_tokens_comments_and_rotation_pairs() -> None:
    assert parse_tokens(TOKENS) == [("alice", ALICE), ("bob", BOB), ("bob", BOB_OLD)]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice 0123456789abcdef0123", "expected 'caller-name: token'"),
        ("alice:", "expected 'caller-name: token'"),
        ("al ice: 0123456789abcdef0123", "caller name must match"),
        ("alice: short-secret", "at least 16 characters"),
        ("alice: 0123456789abcdef0123\nbob: 0123456789abcdef0123", "listed twice"),
    ],
)
def test_parse_tokens_refuses_bad_lines_without_echoing_tokens(text: str, problem: str) -> None:
    with pytest.raises(TokenFileError, match=problem) as caught:
        parse_tokens(text, "tokens")
    assert "0123456789abcdef" not in str(caught.value) and "short-secret" not in str(caught.value)


def test_token_store_looks_up_every_token_of_a_caller(tmp_path: Path) -> None:
    store = TokenStore(write_tokens(tmp_path))
    assert store.lookup(ALICE) == "alice"
    assert store.lookup(BOB) == store.lookup(BOB_OLD) == "bob"
    assert store.lookup(ALICE[:-1]) is None and store.lookup("") is None
    assert store.callers == {"alice", "bob"}


def test_token_store_refuses_an_empty_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="no tokens"):
        TokenStore(write_tokens(tmp_path, "# nobody yet\n"))
    with pytest.raises(TokenFileError, match="cannot read"):
        TokenStore(tmp_path / "absent")


def test_token_store_follows_a_rotated_file_and_keeps_tokens_over_a_broken_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_tokens(tmp_path)
    store = TokenStore(path)
    monkeypatch.setattr(auth, "_RELOAD_EVERY_S", 0.0)
    carol = "carol-token-0123456789abcdef"
    replacement = tmp_path / "tokens.new"
    replacement.write_text(f"carol: {carol}\n")
    os.replace(replacement, path)  # how a Kubernetes Secret volume swaps its files
    store.reload_if_changed()
    assert store.lookup(carol) == "carol" and store.lookup(ALICE) is None
    path.write_text("carol: too-short\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    store.reload_if_changed()
    assert store.lookup(carol) == "carol"  # the broken file was not taken


def test_tokens_are_registered_for_scrubbing(tmp_path: Path) -> None:
    TokenStore(write_tokens(tmp_path))
    assert ALICE not in errors.scrub(f"the caller sent {ALICE} somewhere")


# -- the check -------------------------------------------------------------------------------------


def test_authenticate_by_bearer_token_and_api_key_headers(tmp_path: Path) -> None:
    check = Authenticator(TokenStore(write_tokens(tmp_path)))
    assert check.authenticate({"authorization": f"Bearer {ALICE}"}).name == "alice"
    assert check.authenticate({"authorization": f"bearer   {BOB}"}).name == "bob"
    assert check.authenticate({"api-key": BOB_OLD}).name == "bob"
    assert check.authenticate({"x-api-key": ALICE}) == auth.Caller("alice", "token")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "NO_CREDENTIALS"),
        ({"authorization": ""}, "NO_CREDENTIALS"),
        ({"authorization": f"Basic {ALICE}"}, "NO_CREDENTIALS"),
        ({"authorization": "Bearer "}, "NO_CREDENTIALS"),
        ({"authorization": "Bearer wrong-token-0123456789abcdef"}, "INVALID_TOKEN"),
        ({"authorization": f"Bearer {ALICE}x"}, "INVALID_TOKEN"),
    ],
)
def test_authenticate_refuses_missing_and_wrong_credentials(
    tmp_path: Path, headers: dict[str, str], reason: str
) -> None:
    check = Authenticator(TokenStore(write_tokens(tmp_path)))
    with pytest.raises(errors.Unauthenticated) as caught:
        check.authenticate(headers)
    assert caught.value.reason == reason
    assert ALICE not in caught.value.message and "wrong-token" not in caught.value.message


def test_auth_off_admits_everyone_as_anonymous() -> None:
    assert not Authenticator().enabled
    assert Authenticator().authenticate({}) is ANONYMOUS


def test_a_verified_certificate_names_the_caller_when_mtls_is_on(tmp_path: Path) -> None:
    context = {"x509_common_name": [b"svc-a"], "transport_security_type": [b"ssl"]}
    name = auth.certificate_caller(context)
    assert name == "svc-a"
    assert auth.certificate_caller({"x509_subject_alternative_name": [b"svc-b.local"]}) == "svc-b.local"
    assert auth.certificate_caller({"transport_security_type": [b"ssl"]}) is None
    assert Authenticator(mtls=True).authenticate({}, name) == auth.Caller("svc-a", "mtls")
    with pytest.raises(errors.Unauthenticated, match="client certificate"):
        Authenticator(mtls=True).authenticate({"authorization": f"Bearer {ALICE}"})
    both = Authenticator(TokenStore(write_tokens(tmp_path)), mtls=True)
    assert both.authenticate({"authorization": f"Bearer {ALICE}"}).name == "alice"


# -- the live gRPC server --------------------------------------------------------------------------


@contextlib.contextmanager
def cohere_fake() -> Iterator[Any]:
    with CONTRACT.fake() as fake:
        yield fake


@contextlib.asynccontextmanager
async def secured_app(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[App, Any]]:
    with cohere_fake() as fake:
        async with running_app(
            local_enabled=False,
            http_enabled=settings.pop("http_enabled", False),
            providers={"co": CONTRACT.config(fake.url)},
            auth_tokens_file=write_tokens(tmp_path),
            **settings,
        ) as app:
            yield app, fake


def rerank_request() -> pb.RerankRequest:
    return pb.RerankRequest(
        model=f"co/{CONTRACT.model}",
        query="apple",
        documents=[pb.Document(text="an apple"), pb.Document(text="x")],
    )


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_grpc_calls_without_or_with_a_wrong_token_are_refused(tmp_path: Path) -> None:
    before = metrics.AUTH_REFUSALS.labels(reason="INVALID_TOKEN")._value.get()
    async with secured_app(tmp_path) as (app, fake), grpc.aio.insecure_channel(app.addresses[0]) as channel:
        stub = pb_grpc.RerankServiceStub(channel)
        for metadata, reason in [((), "NO_CREDENTIALS"), (bearer("not-a-token-0123456789"), "INVALID_TOKEN")]:
            for call in (
                stub.Rerank(rerank_request(), metadata=metadata, timeout=10),
                stub.ListModels(pb.ListModelsRequest(), metadata=metadata, timeout=10),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
                info = _error_info(caught.value)
                assert info.reason == reason and info.domain == "rerankd"
            stream = stub.RerankStream(pb.RerankStreamRequest(request=rerank_request()), metadata=metadata)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in stream:
                    pass
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert fake.requests == []  # nothing reached the provider
    assert metrics.AUTH_REFUSALS.labels(reason="INVALID_TOKEN")._value.get() >= before + 3


async def test_grpc_calls_with_a_right_token_are_served_and_counted_per_caller(tmp_path: Path) -> None:
    served = metrics.CALLER_CALLS.labels(caller="bob", method=f"{SERVICE}/Rerank", status="OK")
    before = served._value.get()
    async with secured_app(tmp_path) as (app, fake), grpc.aio.insecure_channel(app.addresses[0]) as channel:
        stub = pb_grpc.RerankServiceStub(channel)
        reply = await stub.Rerank(rerank_request(), metadata=bearer(BOB_OLD), timeout=10)
        assert [r.index for r in reply.results] == [0, 1]
        await stub.ListModels(pb.ListModelsRequest(), metadata=bearer(ALICE), timeout=10)
        batch = stub.RerankBatch(metadata=bearer(ALICE))
        await batch.write(pb.RerankBatchRequest(request=rerank_request()))
        await batch.done_writing()
        answers = [message async for message in batch]
        assert len(answers) == 1 and answers[0].HasField("response")
        assert len(fake.requests) == 2
        assert "alice-token" not in str(fake.requests[0].headers)  # caller tokens are not forwarded
    assert served._value.get() == before + 1


async def test_health_is_exempt_from_auth(tmp_path: Path) -> None:
    async with secured_app(tmp_path) as (app, _), grpc.aio.insecure_channel(app.addresses[0]) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_http_front_door_uses_the_same_tokens(tmp_path: Path) -> None:
    body = {"model": f"co/{CONTRACT.model}", "query": "apple", "documents": ["an apple", "x"]}
    async with secured_app(tmp_path, http_enabled=True) as (app, _), httpx.AsyncClient() as client:
        url = f"http://{app.http_address}/v2/rerank"
        refused = await client.post(url, json=body)
        wrong = await client.post(url, json=body, headers={"authorization": "Bearer nope-0123456789abcdef"})
        served = await client.post(url, json=body, headers={"authorization": f"Bearer {ALICE}"})
    assert refused.status_code == 401 and wrong.status_code == 401
    assert ALICE not in wrong.text
    assert served.status_code == 200, served.text


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    details = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    info = error_details_pb2.ErrorInfo()
    assert status.details[-1].Unpack(info)
    return info


async def test_access_lines_name_the_caller(tmp_path: Path) -> None:
    lines: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(logs.JsonFormatter().format(record)))

    access = logging.getLogger("rerankd.access")
    handler, level = Collect(), access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        async with secured_app(tmp_path) as (app, _), grpc.aio.insecure_channel(app.addresses[0]) as channel:
            stub = pb_grpc.RerankServiceStub(channel)
            await stub.Rerank(rerank_request(), metadata=bearer(ALICE), timeout=10)
            stream = stub.RerankStream(pb.RerankStreamRequest(request=rerank_request()), metadata=bearer(BOB))
            assert [m async for m in stream]
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Rerank(
                    rerank_request(), metadata=bearer("wrong-token-0123456789abcdef"), timeout=10
                )
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    served = [(line["caller"], line["method"], line["status"]) for line in lines if line["msg"] == "call"]
    assert ("alice", f"{SERVICE}/Rerank", "OK") in served and (
        "bob",
        f"{SERVICE}/RerankStream",
        "OK",
    ) in served
    refused = [line for line in lines if line["msg"] == "refused"]
    assert [(r["caller"], r["method"], r["status"]) for r in refused] == [
        ("", f"{SERVICE}/Rerank", "UNAUTHENTICATED")
    ]
    assert "wrong-token" not in json.dumps(lines)


async def test_health_watch_is_exempt_and_reflection_needs_a_token(tmp_path: Path) -> None:
    async with secured_app(tmp_path) as (app, _), grpc.aio.insecure_channel(app.addresses[0]) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=5)
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [answer async for answer in reflect.ServerReflectionInfo(iter([ask]), timeout=5)]
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answers = [
            a async for a in reflect.ServerReflectionInfo(iter([ask]), metadata=bearer(ALICE), timeout=5)
        ]
        names = {service.name for service in answers[0].list_services_response.service}
        assert "rerankd.v1.RerankService" in names
