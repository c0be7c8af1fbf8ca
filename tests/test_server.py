"""The server process: health, reflection, Unix sockets, and draining on SIGTERM mid-stream."""

from __future__ import annotations

import asyncio
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from rerankd.config import Settings
from rerankd.server import _connection_age_options
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.conftest import running_app, stub_for
from tests.examples import FRANCE_BEST, FRANCE_DOCS, FRANCE_QUERY
from tests.support import log_messages, server_process


def test_health_reflection_and_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "rerankd.sock"
    with server_process("--bind", f"unix://{sock}", tmp_path=tmp_path) as server:
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "rerankd.v1.RerankService", "readiness", "liveness"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            answers = list(
                reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            )
            names = {s.name for s in answers[0].list_services_response.service}
            assert {"rerankd.v1.RerankService", "grpc.health.v1.Health"} <= names
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660  # group members (the pod's fsGroup) may connect
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            reply = pb_grpc.RerankServiceStub(channel).Rerank(
                pb.RerankRequest(query=FRANCE_QUERY, documents=[pb.Document(text=d) for d in FRANCE_DOCS]),
                timeout=30,
            )
            assert reply.results[0].index == FRANCE_BEST
        assert "serving" in log_messages(server.log())


def test_sigterm_drains_a_stream_in_flight_then_exits_zero(tmp_path: Path) -> None:
    docs = [
        pb.Document(text=f"Paris is a city in France with {i} bridges and many old streets. " * 6)
        for i in range(120)
    ]
    with server_process("--grace-period", "60", tmp_path=tmp_path) as server:
        channel = grpc.insecure_channel(server.address)
        health_updates: list[int] = []
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="readiness"))

        def follow() -> None:
            try:
                for update in watch:
                    health_updates.append(update.status)
                    if update.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        watch.cancel()
            except grpc.RpcError:
                pass

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        stream = pb_grpc.RerankServiceStub(channel).RerankStream(
            pb.RerankStreamRequest(request=pb.RerankRequest(query=FRANCE_QUERY, documents=docs)), timeout=120
        )
        time.sleep(0.5)  # the call is in flight (scoring 120 documents takes seconds)
        server.terminate(signal.SIGTERM)
        messages = list(stream)
        assert messages[0].HasField("header") and messages[-1].HasField("summary")
        assert sum(len(m.results.results) for m in messages if m.HasField("results")) == len(docs)
        watcher.join(10)
        assert health_updates[0] == health_pb2.HealthCheckResponse.SERVING
        assert health_pb2.HealthCheckResponse.NOT_SERVING in health_updates
        assert server.process.wait(30) == 0
        channel.close()
        log = server.log()
        messages = log_messages(log)
        assert any(m.startswith("draining") for m in messages) and "stopped" in messages


def test_new_calls_are_refused_while_draining(tmp_path: Path) -> None:
    with server_process("--grace-period", "5", tmp_path=tmp_path) as server:
        server.terminate(signal.SIGTERM)
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            raise AssertionError("server did not exit after SIGTERM") from None
        assert server.process.returncode == 0
        with grpc.insecure_channel(server.address) as channel:
            try:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError as exc:
                assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            else:
                raise AssertionError("a stopped server answered")


def test_max_connection_age_sets_goaway_options() -> None:
    assert _connection_age_options(Settings()) == []
    options = dict(_connection_age_options(Settings(max_connection_age_s=300, grace_period_s=20)))
    assert options == {"grpc.max_connection_age_ms": 300_000, "grpc.max_connection_age_grace_ms": 20_000}


async def test_connections_older_than_the_max_age_are_replaced_without_failing_calls() -> None:
    async with running_app(max_connection_age_s=0.3) as app, stub_for(app) as stub:
        request = pb.RerankRequest(query=FRANCE_QUERY, documents=[pb.Document(text=d) for d in FRANCE_DOCS])
        for _ in range(4):
            reply = await stub.Rerank(request, timeout=30)
            assert reply.results[0].index == FRANCE_BEST
            await asyncio.sleep(0.25)


def test_the_default_local_model_has_no_breaker() -> None:
    from rerankd.server import build

    app = build(Settings(metrics_enabled=False, http_enabled=False))
    (target,) = app.router.resolve("default")
    assert target.provider.kind == "local"
    assert app.router.target_state(target).breaker.config.enabled is False
