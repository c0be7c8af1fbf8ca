"""Test helpers shared across the suite: free ports, a real `rerankd serve` child process, log lines."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent


def log_records(text: str) -> list[dict[str, object]]:
    """The JSON objects of rerankd's log lines in `text` (lines that are not JSON are skipped)."""
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def log_messages(text: str) -> list[str]:
    """The `msg` of each of rerankd's log lines in `text`."""
    return [str(record.get("msg")) for record in log_records(text)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_serving(address: str, timeout: float = 60.0, service: str = "") -> None:
    """Block until the health service at `address` says SERVING (or raise TimeoutError)."""
    end = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            with grpc.insecure_channel(address) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=1.0
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"server at {address} not SERVING after {timeout}s: {last}")


@dataclass
class ServerProcess:
    address: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)


@contextlib.contextmanager
def server_process(
    *args: str, env: dict[str, str] | None = None, tmp_path: Path, timeout: float = 60.0
) -> Iterator[ServerProcess]:
    """Run `rerankd serve` on a free loopback port; yields once health is SERVING."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    log_path = tmp_path / f"rerankd-{port}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKD_")}
    child_env["RERANKD_METRICS_PORT"] = str(free_port())
    child_env.update(env or {})
    # The HTTP API gets a free port too (a test's own --http-port / --no-http comes later and wins).
    http = ["--http-port", str(free_port())]
    cmd = [sys.executable, "-m", "rerankd.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += [*http, *args]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env, cwd=ROOT)
    server = ServerProcess(address, proc, log_path)
    try:
        try:
            wait_serving(address, timeout)
        except TimeoutError:
            proc.kill()
            raise RuntimeError(f"server did not start; log:\n{server.log()}") from None
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
