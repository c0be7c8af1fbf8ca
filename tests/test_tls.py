"""TLS server credentials from files, and mTLS with a client CA (certificates made at test time)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError
from rerankd import metrics
from rerankd.config import Settings
from rerankd.server import App, build
from rerankd.tls import TlsConfigError, is_loopback, warn_if_exposed
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.certs import CLIENT_NAME, Pki, make_pki
from tests.conftest import running_app
from tests.fakes.cohere import CONTRACT
from tests.test_auth import ALICE, bearer, rerank_request, write_tokens


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextlib.asynccontextmanager
async def tls_app(pki: Pki, **settings: Any) -> AsyncIterator[App]:
    with CONTRACT.fake() as fake:
        async with running_app(
            local_enabled=False,
            http_enabled=False,
            providers={"co": CONTRACT.config(fake.url)},
            tls_cert_file=pki.server_cert,
            tls_key_file=pki.server_key,
            **settings,
        ) as app:
            yield app


def credentials(pki: Pki, cert: str | None = None) -> grpc.ChannelCredentials:
    if cert is None:
        return grpc.ssl_channel_credentials(root_certificates=pki.read("server_ca"))
    return grpc.ssl_channel_credentials(
        root_certificates=pki.read("server_ca"),
        private_key=pki.read(f"{cert}_key"),
        certificate_chain=pki.read(f"{cert}_cert"),
    )


async def rerank(address: str, creds: grpc.ChannelCredentials | None, **call: Any) -> pb.RerankResponse:
    channel = grpc.aio.secure_channel(address, creds) if creds else grpc.aio.insecure_channel(address)
    async with channel:
        return await pb_grpc.RerankServiceStub(channel).Rerank(rerank_request(), timeout=5, **call)


async def test_tls_serves_tls_clients_and_refuses_plaintext(pki: Pki) -> None:
    async with tls_app(pki) as app:
        address = app.addresses[0]
        reply = await rerank(address, credentials(pki))
        assert len(reply.results) == 2
        async with grpc.aio.secure_channel(address, credentials(pki)) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await rerank(address, None)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_tls_leaves_unix_sockets_plaintext(pki: Pki, tmp_path: Path) -> None:
    socket = f"unix://{tmp_path}/rerankd.sock"
    async with tls_app(pki, bind=[socket]) as app:
        assert app.addresses[1] == socket
        assert len((await rerank(socket, None)).results) == 2


async def test_mtls_required_serves_a_client_certificate_and_refuses_none_or_a_foreign_one(pki: Pki) -> None:
    served = metrics.CALLER_CALLS.labels(
        caller=CLIENT_NAME, method="rerankd.v1.RerankService/Rerank", status="OK"
    )
    before = served._value.get()
    async with tls_app(pki, tls_client_ca_file=pki.client_ca) as app:
        address = app.addresses[0]
        assert len((await rerank(address, credentials(pki, "client"))).results) == 2
        for creds in (credentials(pki), credentials(pki, "rogue")):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await rerank(address, creds, metadata=bearer(ALICE))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails
    assert served._value.get() == before + 1  # the certificate named the caller


async def test_mtls_with_tokens_lets_certificates_name_callers_and_unix_sockets_use_tokens(
    pki: Pki, tmp_path: Path
) -> None:
    socket = f"unix://{tmp_path}/rerankd.sock"
    tokens = write_tokens(tmp_path)
    async with tls_app(pki, tls_client_ca_file=pki.client_ca, auth_tokens_file=tokens, bind=[socket]) as app:
        assert (await rerank(app.addresses[0], credentials(pki, "client"))).results
        assert (await rerank(socket, None, metadata=bearer(ALICE))).results
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await rerank(socket, None)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_tls_settings_must_come_in_pairs(pki: Pki) -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(tls_cert_file=pki.server_cert)
    with pytest.raises(ValidationError, match="needs tls_cert_file"):
        Settings(tls_client_ca_file=pki.client_ca)


async def test_an_unreadable_or_non_pem_file_stops_the_start(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "key.txt"
    not_pem.write_text("not a key")
    for key in (tmp_path / "absent.key", not_pem):
        app = build(
            Settings(
                host="127.0.0.1",
                port=0,
                local_enabled=False,
                http_enabled=False,
                tls_cert_file=pki.server_cert,
                tls_key_file=key,
            )
        )
        with pytest.raises(TlsConfigError, match="tls_key_file") as caught:
            await app.start()
        assert "not a key" not in str(caught.value)
        await app.drain(0)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("[::1]:50051", True),
        ("localhost:1", True),
        ("unix:///tmp/x.sock", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.0.0.3:50051", False),
    ],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_exposed_listeners_without_tls_or_auth_are_warned_about(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="rerankd.tls"):
        warn_if_exposed(Settings(host="127.0.0.1", bind=["unix:///tmp/x.sock"]), authenticated=False)
        assert caplog.records == []
        warn_if_exposed(Settings(host="0.0.0.0"), authenticated=False)
    messages = [record.getMessage() for record in caplog.records]
    assert any("not authenticated" in m for m in messages) and any("without TLS" in m for m in messages)
    assert any("HTTP API" in m for m in messages)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rerankd.tls"):
        secured = Settings(
            host="0.0.0.0", http_enabled=False, tls_cert_file=pki.server_cert, tls_key_file=pki.server_key
        )
        warn_if_exposed(secured, authenticated=True)
    assert caplog.records == []
