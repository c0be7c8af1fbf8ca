"""What per-caller authorization and certificate rotation cost: the check per call, the file check
per TLS handshake, a reload, and a new connection's handshake with and without rotation support.

    python -m bench.security [--rounds 400]

prints one line per figure (medians; handshakes interleaved so that both variants see the same
machine). The test PKI comes from tests/certs.py, made fresh in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import statistics
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from rerankd import authz, errors
from rerankd.auth import Caller
from rerankd.tls import ServerCertificates

from tests.certs import Pki, make_pki


def _per_call_ns(statement: Callable[[], object], number: int = 200_000) -> float:
    return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e9


def _show(label: str, value: float, unit: str) -> None:
    print(f"{label:<46} {value:9.2f} {unit}")


def check_costs() -> None:
    anyone = Caller("svc", "token")
    listed = Caller("svc", "token", authz.Permissions(("default", "co/rerank-*", "fast"), max_documents=1000))

    def refused() -> None:
        with contextlib.suppress(errors.PermissionDenied):
            authz.check(listed, "other", 10)

    _show("authz.check, any model (no callers set)", _per_call_ns(lambda: authz.check(anyone, "x", 10)), "ns")
    allowed = _per_call_ns(lambda: authz.check(listed, "co/rerank-v3.5", 10))
    _show("authz.check, 3 patterns + cap, allowed", allowed, "ns")
    _show("authz.check, refused (error + metric)", _per_call_ns(refused, 50_000), "ns")


def file_costs(pki: Pki) -> ServerCertificates:
    certificates = ServerCertificates(pki.server_cert, pki.server_key, pki.client_ca)
    _show(
        "refresh(), files unchanged (per handshake)", _per_call_ns(certificates.refresh, 20_000) / 1e3, "us"
    )
    _show("reload of a changed set (read + check)", _per_call_ns(certificates._load, 200) / 1e6, "ms")
    return certificates


async def _median_ms(rounds: int, variants: dict[str, Callable[[], Awaitable[None]]]) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, connect in variants.items():
            started = time.perf_counter()
            await connect()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


async def grpc_handshakes(pki: Pki, certificates: ServerCertificates, rounds: int) -> None:
    static = grpc.ssl_server_credentials(
        [(pki.read("server_key"), pki.read("server_cert"))], pki.read("client_ca"), require_client_auth=True
    )
    servers, ports = [], {}
    for name, credentials in (("static", static), ("followed", certificates.grpc_credentials())):
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        ports[name] = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        servers.append(server)
    client = grpc.ssl_channel_credentials(
        pki.read("server_ca"), pki.read("client_key"), pki.read("client_cert")
    )

    def connect(port: int) -> Callable[[], Awaitable[None]]:
        async def once() -> None:
            options = [("grpc.use_local_subchannel_pool", 1)]
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", client, options=options) as channel:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)

        return once

    medians = await _median_ms(rounds, {name: connect(port) for name, port in ports.items()})
    for server in servers:
        await server.stop(0)
    print(
        f"gRPC new mTLS connection + call: static credentials {medians['static']:.2f} ms,"
        f" followed files {medians['followed']:.2f} ms"
    )


async def https_handshakes(pki: Pki, certificates: ServerCertificates, rounds: int) -> None:
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    plain.load_cert_chain(pki.server_cert, pki.server_key)
    plain.load_verify_locations(pki.client_ca)
    plain.verify_mode = ssl.CERT_REQUIRED

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"x")
        await writer.drain()
        writer.close()

    servers, ports = [], {}
    for name, context in (("static", plain), ("followed", certificates.ssl_context())):
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
        ports[name] = server.sockets[0].getsockname()[1]
        servers.append(server)
    client = ssl.create_default_context(cafile=str(pki.server_ca))
    client.load_cert_chain(pki.client_cert, pki.client_key)

    def connect(port: int) -> Callable[[], Awaitable[None]]:
        async def once() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            await reader.read()
            writer.close()

        return once

    medians = await _median_ms(rounds, {name: connect(port) for name, port in ports.items()})
    for server in servers:
        server.close()
    print(
        f"HTTPS-port mTLS handshake + 1 byte: static context {medians['static']:.2f} ms,"
        f" followed files {medians['followed']:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400, help="new connections per variant")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        pki = make_pki(Path(folder))
        check_costs()
        certificates = file_costs(pki)
        asyncio.run(grpc_handshakes(pki, certificates, args.rounds))
        asyncio.run(https_handshakes(pki, certificates, args.rounds))


if __name__ == "__main__":
    main()
