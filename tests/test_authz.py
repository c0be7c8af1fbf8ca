"""Per-caller authorization: the policy, its settings, and a matrix of callers x models x front doors
against a real server (gRPC and HTTP on 127.0.0.1, a fake Cohere behind it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from pydantic import ValidationError
from rerankd import authz, errors, metrics
from rerankd.auth import ANONYMOUS, Authenticator, Caller, TokenStore
from rerankd.authz import ALLOW_ALL, NOTHING, Permissions, Policy
from rerankd.config import Settings
from rerankd.ratelimit import RateLimiter
from rerankd.server import App
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.conftest import running_app
from tests.fakes.cohere import CONTRACT

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-fedcba9876543210"
CAROL = "carol-token-00112233445566"
TOKENS = f"alice: {ALICE}\nbob: {BOB}\ncarol: {CAROL}\n"
CALLERS = {
    "alice": {"models": ["fast"]},
    "bob": {"models": ["precise", "co/*"], "max_documents": 2},
    # carol is not listed and there is no "*": she may use nothing
}
MODELS = ("fast", "precise", f"co/{CONTRACT.model}", CONTRACT.model)


# -- the policy ------------------------------------------------------------------------------------


def test_patterns_match_the_name_a_request_uses() -> None:
    permissions = Permissions(("default", "co/rerank-*", "exact"))
    assert permissions.allows("default") and permissions.allows("")  # empty = the default alias
    assert permissions.allows("co/rerank-v3.5") and permissions.allows("exact")
    assert not permissions.allows("co/other") and not permissions.allows("exactly")
    assert not permissions.allows("Default")  # case matters, as in model names
    assert not permissions.allows("rerank-v3.5")  # a direct name is not its provider/model form
    assert ALLOW_ALL.allows("anything/at-all") and ALLOW_ALL.any_model
    assert not NOTHING.allows("default") and not NOTHING.any_model


def test_a_refusal_names_the_model_or_the_cap_and_is_pure() -> None:
    permissions = Permissions(("fast",), max_documents=2)
    assert permissions.refusal("bob", "fast", 2) is None
    denied = permissions.refusal("bob", "slow", 1)
    assert isinstance(denied, errors.PermissionDenied) and denied.reason == authz.MODEL_NOT_ALLOWED
    assert "'slow'" in denied.message and "'bob'" in denied.message and "fast" in denied.message
    capped = permissions.refusal("bob", "fast", 3)
    assert capped is not None and capped.reason == authz.TOO_MANY_DOCUMENTS
    assert "at most 2 documents" in capped.message and "has 3" in capped.message
    huge = permissions.refusal("bob", "m" * 10_000, 1)
    assert huge is not None and len(huge.message) < 300  # a caller's long name is cut


def test_check_counts_refusals_by_caller_and_reason_and_lets_unauthenticated_use_through() -> None:
    counter = metrics.PERMISSION_DENIED.labels(caller="dora", reason=authz.MODEL_NOT_ALLOWED)
    before = counter._value.get()
    dora = Caller("dora", "token", Permissions(("fast",)))
    authz.check(dora, "fast", 10)
    with pytest.raises(errors.PermissionDenied):
        authz.check(dora, "slow", 1)
    assert counter._value.get() == before + 1
    authz.check(None, "slow", 10**6)  # nothing authenticated the call (in-process use)


def test_policy_from_settings_lists_callers_and_a_fallback() -> None:
    assert Policy.from_settings(Settings()).permissions("anyone") is ALLOW_ALL
    policy = Policy.from_settings(Settings(callers={**CALLERS, "*": {"models": ["fast"]}}))
    assert policy.permissions("alice") == Permissions(("fast",))
    assert policy.permissions("bob") == Permissions(("precise", "co/*"), 2)
    assert policy.permissions("someone-else") == Permissions(("fast",))
    assert Policy.from_settings(Settings(callers=CALLERS)).permissions("carol") is NOTHING
    assert Policy.from_settings(Settings(callers={"x": {}})).permissions("x").any_model  # default '*'


@pytest.mark.parametrize(
    ("callers", "problem"),
    [
        ({"bad name": {}}, "neither a caller name"),
        ({"x": {"models": [""]}}, "1-256 printable"),
        ({"x": {"max_documents": 0}}, "greater than or equal to 1"),
        ({"x": {"models": ["*"], "unknown": 1}}, "Extra inputs"),
    ],
)
def test_bad_callers_settings_stop_the_start(callers: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(callers=callers)


def test_callers_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANKD_CALLERS", '{"alice": {"models": ["fast"], "max_documents": 5}}')
    assert Settings().callers["alice"].max_documents == 5


def test_authenticated_callers_carry_their_permissions(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    policy = Policy.from_settings(Settings(callers=CALLERS))
    check = Authenticator(TokenStore(tokens), policy=policy)
    assert check.authenticate({"authorization": f"Bearer {ALICE}"}).permissions == Permissions(("fast",))
    assert check.authenticate({"authorization": f"Bearer {CAROL}"}).permissions is NOTHING
    assert Authenticator(mtls=True, policy=policy).authenticate({}, "bob").permissions.max_documents == 2
    assert Authenticator().anonymous is ANONYMOUS  # auth and authorization off: the shared caller
    off = Authenticator(policy=Policy.from_settings(Settings(callers={"anonymous": {"models": ["fast"]}})))
    assert off.authenticate({}).permissions == Permissions(("fast",))  # auth off: the policy still holds


def test_caller_rates_feed_the_rate_limiter() -> None:
    settings = Settings(
        rate_limit_rps=5,
        rate_limit_callers={"bob": 7},
        callers={"alice": {"rate_limit_rps": 2}, "bob": {}, "carol": {}, "*": {"rate_limit_rps": 1}},
    )
    limiter = RateLimiter.from_settings(settings)
    assert limiter is not None
    assert limiter.rate_of("alice") == 2  # its own
    assert limiter.rate_of("bob") == 7  # rate_limit_callers
    assert limiter.rate_of("carol") == 5  # listed without a rate: rate_limit_rps
    assert limiter.rate_of("someone-else") == 1  # not listed: the "*" entry's
    assert RateLimiter.from_settings(Settings(callers={"alice": {"models": ["x"]}})) is None
    only = RateLimiter.from_settings(Settings(callers={"alice": {"rate_limit_rps": 3}}))
    assert only is not None and only.rate_of("alice") == 3 and only.rate_of("bob") == 0


# -- the matrix, on a real server ------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    app: App
    fake: Any


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    tokens = tmp_path_factory.mktemp("authz") / "tokens"
    tokens.write_text(TOKENS)
    with CONTRACT.fake() as fake:
        async with running_app(
            local_enabled=False,
            providers={"co": {**CONTRACT.config(fake.url), "models": [CONTRACT.model]}},
            routes={
                "fast": {"targets": [{"provider": "co", "model": CONTRACT.model}]},
                "precise": {"targets": [{"provider": "co", "model": CONTRACT.model}]},
            },
            auth_tokens_file=tokens,
            callers=CALLERS,
        ) as app:
            yield Server(app, fake)


def allowed(caller: str, model: str, documents: int = 2) -> bool:
    if caller == "alice":
        return model == "fast"
    if caller == "bob":
        return model in ("precise", f"co/{CONTRACT.model}") and documents <= 2
    return False


CASES = [
    (caller, model, documents)
    for caller in ("alice", "bob", "carol")
    for model in MODELS
    for documents in ((2, 3) if caller == "bob" else (2,))
]
TOKEN_OF = {"alice": ALICE, "bob": BOB, "carol": CAROL}


def _request(model: str, documents: int) -> pb.RerankRequest:
    return pb.RerankRequest(
        model=model, query="apple", documents=[pb.Document(text=f"doc {i} apple") for i in range(documents)]
    )


def _reason(error: grpc.aio.AioRpcError) -> str:
    details = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    assert status_pb2.Status.FromString(details).details[-1].Unpack(info)
    return info.reason


def _expected_reason(caller: str, model: str) -> str:
    return authz.TOO_MANY_DOCUMENTS if allowed(caller, model) else authz.MODEL_NOT_ALLOWED


@contextlib.asynccontextmanager
async def _stub(app: App) -> AsyncIterator[pb_grpc.RerankServiceStub]:
    async with grpc.aio.insecure_channel(app.addresses[0]) as channel:
        yield pb_grpc.RerankServiceStub(channel)


@pytest.mark.parametrize(("caller", "model", "documents"), CASES)
async def test_grpc_matrix(server: Server, caller: str, model: str, documents: int) -> None:
    metadata = (("authorization", f"Bearer {TOKEN_OF[caller]}"),)
    ok = allowed(caller, model, documents)
    seen = len(server.fake.requests)
    async with _stub(server.app) as stub:
        # Rerank
        call = stub.Rerank(_request(model, documents), metadata=metadata, timeout=10)
        if ok:
            assert len((await call).results) == documents
        else:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert _reason(caught.value) == _expected_reason(caller, model)
            assert repr(model) in (caught.value.details() or "") or "at most 2 documents" in (
                caught.value.details() or ""
            )
        # RerankStream
        stream = stub.RerankStream(
            pb.RerankStreamRequest(request=_request(model, documents)), metadata=metadata
        )
        if ok:
            assert [m async for m in stream][-1].HasField("summary")
        else:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                [m async for m in stream]
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # RerankBatch: a refusal is that message's answer; the stream goes on
        batch = stub.RerankBatch(metadata=metadata, timeout=10)
        await batch.write(pb.RerankBatchRequest(request=_request(model, documents)))
        await batch.done_writing()
        answers = [answer async for answer in batch]
        assert len(answers) == 1
        if ok:
            assert answers[0].HasField("response")
        else:
            assert answers[0].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert len(server.fake.requests) - seen == (3 if ok else 0)  # a refused call reaches no provider


HTTP_DOORS = {
    "cohere": ("/v2/rerank", lambda model, docs: {"model": model, "query": "apple", "documents": docs}),
    "portkey": (
        "/portkey/v1/rerank",
        lambda model, docs: {"model": model, "query": "apple", "documents": docs},
    ),
    "pinecone": (
        "/rerank",
        lambda model, docs: {"model": model, "query": "apple", "documents": [{"text": d} for d in docs]},
    ),
    "tei": ("/tei/rerank", lambda model, docs: {"model": model, "query": "apple", "texts": docs}),
}


@pytest.mark.parametrize("door", sorted(HTTP_DOORS))
@pytest.mark.parametrize(("caller", "model", "documents"), CASES)
async def test_http_matrix(server: Server, door: str, caller: str, model: str, documents: int) -> None:
    path, body = HTTP_DOORS[door]
    docs = [f"doc {i} apple" for i in range(documents)]
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            f"http://{server.app.http_address}{path}",
            json=body(model, docs),
            headers={"authorization": f"Bearer {TOKEN_OF[caller]}"},
            timeout=10,
        )
    if allowed(caller, model, documents):
        assert reply.status_code == 200, reply.text
    else:
        assert reply.status_code == 403, reply.text
        text = reply.text
        assert (
            (model in text)
            if _expected_reason(caller, model) == authz.MODEL_NOT_ALLOWED
            else ("at most 2 documents" in text)
        )


async def test_list_models_shows_each_caller_what_it_may_use(server: Server) -> None:
    async with _stub(server.app) as stub:
        seen = {}
        for caller, token in TOKEN_OF.items():
            reply = await stub.ListModels(
                pb.ListModelsRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10
            )
            seen[caller] = [model.name for model in reply.models]
    assert seen == {"alice": ["fast"], "bob": ["precise"], "carol": []}


async def test_refusals_are_counted_by_caller_and_reason(server: Server) -> None:
    counter = metrics.PERMISSION_DENIED.labels(caller="carol", reason=authz.MODEL_NOT_ALLOWED)
    before = counter._value.get()
    async with _stub(server.app) as stub:
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Rerank(
                _request("fast", 1), metadata=(("authorization", f"Bearer {CAROL}"),), timeout=10
            )
    assert counter._value.get() == before + 1


async def test_auth_off_with_callers_applies_the_anonymous_entry() -> None:
    with CONTRACT.fake() as fake:
        async with (
            running_app(
                local_enabled=False,
                http_enabled=False,
                providers={"co": CONTRACT.config(fake.url)},
                callers={"anonymous": {"models": ["co/*"], "max_documents": 1}},
            ) as app,
            _stub(app) as stub,
        ):
            assert (await stub.Rerank(_request(f"co/{CONTRACT.model}", 1), timeout=10)).results
            for request in (_request(f"co/{CONTRACT.model}", 2), _request("other/x", 1)):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Rerank(request, timeout=10)
                assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_callers_come_from_the_yaml_config(tmp_path: Path) -> None:
    config = tmp_path / "rerankd.yaml"
    config.write_text(
        "callers:\n"
        "  search-api:\n"
        "    models: [default, 'co/rerank-*']\n"
        "    max_documents: 1000\n"
        "  '*':\n"
        "    models: [default]\n"
    )
    policy = Policy.from_settings(Settings(config=config))
    assert policy.permissions("search-api") == Permissions(("default", "co/rerank-*"), 1000)
    assert policy.permissions("anyone") == Permissions(("default",))
