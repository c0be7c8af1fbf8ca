"""TLS server credentials from files, and mTLS with a client CA (certificates made at test time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
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
            http_enabled=settings.pop("http_enabled", False),
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
    with caplog.at_level(logging.WARNING, logger="rerankd.tls"):
        mutual_only = Settings(
            tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, tls_client_ca_file=pki.client_ca
        )
        warn_if_exposed(mutual_only, authenticated=True)
    assert any("cannot name callers by client certificate" in r.getMessage() for r in caplog.records)


# -- TLS on the HTTP port, and rotation without a restart --------------------------------------------


class SecretVolume:
    """A folder laid out like a Kubernetes Secret volume: each file a link through `..data`, which
    is swapped in one rename, so every file changes at once (as cert-manager's updates arrive)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions = 0
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    def install(self, files: dict[str, bytes]) -> None:
        self.versions += 1
        version = self.root / f"..v{self.versions}"
        version.mkdir()
        for name, data in files.items():
            (version / name).write_bytes(data)
        staged = self.root / "..data_tmp"
        staged.symlink_to(version.name)
        os.replace(staged, self.root / "..data")
        for name in files:
            if not self.path(name).is_symlink():
                self.path(name).symlink_to(f"..data/{name}")


def serving_files(server: Pki, client_cas: tuple[Pki, ...]) -> dict[str, bytes]:
    return {
        "tls.crt": server.read("server_cert"),
        "tls.key": server.read("server_key"),
        "ca.crt": b"".join(p.read("client_ca") for p in client_cas),
    }


def fresh_channel(address: str, trusts: tuple[Pki, ...], client: Pki | None) -> grpc.aio.Channel:
    """A channel with its own connection (no subchannel shared with other channels)."""
    roots = b"".join(p.read("server_ca") for p in trusts)
    creds = grpc.ssl_channel_credentials(
        roots,
        client.read("client_key") if client else None,
        client.read("client_cert") if client else None,
    )
    return grpc.aio.secure_channel(address, creds, options=[("grpc.use_local_subchannel_pool", 1)])


async def grpc_outcome(address: str, trusts: tuple[Pki, ...], client: Pki | None) -> str:
    async with fresh_channel(address, trusts, client) as channel:
        try:
            await pb_grpc.RerankServiceStub(channel).Rerank(
                rerank_request(), metadata=bearer(ALICE), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
    return "OK"


async def https_outcome(address: str, trusts: tuple[Pki, ...], client: Pki | None) -> str:
    """One call on a new HTTPS connection: its status code, or "refused" when the TLS handshake fails."""
    context = ssl.create_default_context(cadata="".join(p.read("server_ca").decode() for p in trusts))
    if client is not None:
        context.load_cert_chain(client.client_cert, client.client_key)
    body = {"model": f"co/{CONTRACT.model}", "query": "apple", "documents": ["an apple", "x"]}
    async with httpx.AsyncClient(verify=context) as http:
        try:
            reply = await http.post(
                f"https://{address}/v2/rerank",
                json=body,
                headers={"authorization": f"Bearer {ALICE}"},
                timeout=5,
            )
        except httpx.TransportError:
            return "refused"
    return str(reply.status_code)


async def test_http_port_serves_tls_from_the_same_files(pki: Pki, tmp_path: Path) -> None:
    async with tls_app(pki, http_enabled=True, auth_tokens_file=write_tokens(tmp_path)) as app:
        assert await https_outcome(app.http_address, (pki,), None) == "200"
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(f"http://{app.http_address}/openapi.json", timeout=5)
    async with tls_app(
        pki, http_enabled=True, auth_tokens_file=write_tokens(tmp_path), tls_client_ca_file=pki.client_ca
    ) as app:
        assert await https_outcome(app.http_address, (pki,), pki) == "200"
        assert (
            await https_outcome(app.http_address, (pki,), None) == "refused"
        )  # mTLS: a certificate is required


class Caller:
    """Calls in the background, each on the same channel or on a new connection, until stopped;
    records each outcome under the rotation phase it started in."""

    def __init__(self, call: Callable[[], Awaitable[str]]) -> None:
        self.call = call
        self.phase = 0
        self.outcomes: list[tuple[int, str]] = []
        self._progress = asyncio.Event()
        self._stop = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop:
            phase = self.phase
            self.outcomes.append((phase, await self.call()))
            if phase == self.phase:
                self._progress.set()

    async def next_phase(self, phase: int) -> None:
        """Enter `phase`; returns once a call that started in it has finished."""
        self.phase = phase
        self._progress.clear()
        await self._progress.wait()

    async def stop(self) -> list[tuple[int, str]]:
        self._stop = True
        await self.task
        return self.outcomes


async def test_rotated_certificates_and_client_cas_take_effect_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = make_pki(tmp_path / "old"), make_pki(tmp_path / "new", "2")
    volume = SecretVolume(tmp_path / "secret")
    volume.install(serving_files(old, (old,)))
    with caplog.at_level(logging.INFO, logger="rerankd.tls"), CONTRACT.fake() as fake:
        async with running_app(
            local_enabled=False,
            providers={"co": CONTRACT.config(fake.url)},
            auth_tokens_file=write_tokens(tmp_path),
            tls_cert_file=volume.path("tls.crt"),
            tls_key_file=volume.path("tls.key"),
            tls_client_ca_file=volume.path("ca.crt"),
        ) as app:
            grpc_at, http_at = app.addresses[0], app.http_address
            both = (old, new)
            assert await grpc_outcome(grpc_at, both, old) == "OK"
            assert await https_outcome(http_at, both, old) == "200"
            assert await grpc_outcome(grpc_at, (new,), new) == "UNAVAILABLE"  # not the new ones yet
            assert await https_outcome(http_at, (new,), new) == "refused"
            # Callers that keep calling through the rotation: one gRPC channel made before it,
            # and HTTPS on a new connection per call with the old client certificate.
            async with fresh_channel(grpc_at, both, old) as channel:
                stub = pb_grpc.RerankServiceStub(channel)

                async def on_channel() -> str:
                    try:
                        await stub.Rerank(rerank_request(), metadata=bearer(ALICE), timeout=5)
                    except grpc.aio.AioRpcError as exc:
                        return exc.code().name
                    return "OK"

                steady = Caller(on_channel)
                https = Caller(lambda: https_outcome(http_at, both, old))
                await asyncio.gather(steady.next_phase(0), https.next_phase(0))

                # 1. a new server certificate (another CA), and both client CAs during the change
                volume.install(serving_files(new, (old, new)))
                await asyncio.gather(steady.next_phase(1), https.next_phase(1))
                assert await grpc_outcome(grpc_at, (new,), new) == "OK"
                assert await https_outcome(http_at, (new,), new) == "200"
                assert await grpc_outcome(grpc_at, (old,), old) == "UNAVAILABLE"  # the old one is gone
                assert await https_outcome(http_at, (old,), old) == "refused"
                https_outcomes = await https.stop()

                # 2. the old client CA dropped: its certificates are refused on new connections
                volume.install(serving_files(new, (new,)))
                await steady.next_phase(2)
                assert await grpc_outcome(grpc_at, both, old) == "UNAVAILABLE"
                assert await https_outcome(http_at, both, old) == "refused"
                assert await grpc_outcome(grpc_at, both, new) == "OK"
                assert await https_outcome(http_at, both, new) == "200"
                steady_outcomes = await steady.stop()
    assert {outcome for _, outcome in steady_outcomes} == {"OK"}  # no call failed through the rotation
    assert {phase for phase, _ in steady_outcomes} == {0, 1, 2}
    assert {outcome for _, outcome in https_outcomes} == {"200"}
    assert {phase for phase, _ in https_outcomes} == {0, 1}
    reloads = [r.getMessage() for r in caplog.records if "reloaded" in r.getMessage()]
    assert len(reloads) == 2  # once per rotation, for both ports


async def test_a_half_written_rotation_keeps_the_certificates_in_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = make_pki(tmp_path / "old"), make_pki(tmp_path / "new", "2")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(old.read("server_cert"))
    key.write_bytes(old.read("server_key"))
    with CONTRACT.fake() as fake, caplog.at_level(logging.INFO, logger="rerankd.tls"):
        async with running_app(
            local_enabled=False,
            providers={"co": CONTRACT.config(fake.url)},
            auth_tokens_file=write_tokens(tmp_path),
            tls_cert_file=cert,
            tls_key_file=key,
        ) as app:
            cert.write_bytes(new.read("server_cert"))  # the key has not followed yet
            for _ in range(2):
                assert await grpc_outcome(app.addresses[0], (old,), None) == "OK"
                assert await https_outcome(app.http_address, (old,), None) == "200"
            refusals = [
                r for r in caplog.records if "keeping the previous TLS certificates" in r.getMessage()
            ]
            assert len(refusals) == 1 and "BEGIN" not in refusals[0].getMessage()  # logged once, no PEM
            key.write_bytes(new.read("server_key"))
            assert await grpc_outcome(app.addresses[0], (new,), None) == "OK"
            assert await https_outcome(app.http_address, (new,), None) == "200"
