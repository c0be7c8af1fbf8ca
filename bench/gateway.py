"""rerankd's cost over a direct provider call, its throughput and latency under load, and a big stream.

`make bench-gateway` (python -m bench.gateway) measures, in one run, and writes
bench/results/gateway.md (and gateway.json beside it):

1. Overhead at concurrency 1, 20 documents: the same requests straight to an instant fake Cohere v2
   API over HTTP (aiohttp client, keep-alive) and through rerankd to that fake, in alternating
   rounds so that both see the same background load; rerankd's added latency is the difference.
2. Throughput: Rerank and RerankStream at concurrency 1, 16, 64 with 20 and 1,000 documents, and
   the direct calls beside them; RPS, p50/p90/p99, rerankd's CPU per call and its RPS as a share
   of the direct rate.
3. A 10,000-document RerankStream with return_documents (10 provider chunks of 1,000) read on a
   channel with gRPC's default 4 MiB receive limit: time to the first result and to the end.
4. Optionally (`--profile`, on in `make bench-gateway`) a py-spy profile of rerankd under load.

Placement, on a machine with two or more CPUs: rerankd (the real `rerankd serve` process) is
pinned alone to the first CPU with taskset; the fast fake (bench/fastfake.py, its own process) and
this load generator are pinned to the second with os.sched_setaffinity. The direct calls therefore
run on one CPU (client and fake), and the calls through rerankd on two. Every loop is bounded in
count and time and every address is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from bench import fastfake, floor
from bench.load import (
    CHANNEL_OPTIONS,
    HEADER,
    Caps,
    Report,
    direct_cohere,
    drive,
    grpc_rerank,
    grpc_stream,
    percentile,
    rerank_request,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NOTES = ROOT / "bench" / "gateway-notes.md"
MODEL = "rerank-v3.5"
DEFAULT_RECEIVE_LIMIT = 4 * 1024 * 1024  # gRPC's default max receive message size
# Targets of issue 10.
ADDED_P50_MS, ADDED_P99_MS, RPS_SHARE, P99_OVER_P50 = 0.8, 2.0, 0.3, 3.0

CONFIG = """\
providers:
  bench:
    kind: cohere
    base_url: {url}
    api_key: bench-key
    models: [{model}]
    max_concurrency: 256
routes:
  default:
    targets:
      - {{provider: bench, model: {model}}}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_serving(address: str, timeout: float = 60.0) -> None:
    """Block until the health service at `address` says SERVING (bounded by `timeout`)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(grpc.RpcError), grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        time.sleep(0.1)
    raise TimeoutError(f"rerankd at {address} not SERVING after {timeout}s")


@dataclass
class Served:
    """A running rerankd process."""

    address: str
    pid: int
    log: Path


@contextlib.contextmanager
def serving_child(
    args: list[str], port: int, cpu: int | None, log: Path, env: dict[str, str], stop_wait_s: float = 15.0
) -> Iterator[int]:
    """`python <args>` (a gRPC server on 127.0.0.1:`port`) pinned to `cpu` when given, its output in
    `log`, without the caller's RERANKD_* variables (plus `env`); yields its pid once it is SERVING."""
    cmd = [sys.executable, *args]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKD_")}
    child_env.update({"RERANKD_METRICS_PORT": "0", **env})  # metrics on a free port: servers may overlap
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env, cwd=ROOT)
    try:
        try:
            wait_serving(f"127.0.0.1:{port}")
        except TimeoutError:
            raise RuntimeError(f"rerankd did not start:\n{log.read_text()[-3000:]}") from None
        yield proc.pid
    finally:
        fastfake.stop_child(proc, stop_wait_s)


@contextlib.contextmanager
def rerankd_process(config: Path, cpu: int | None, workdir: Path, *extra: str) -> Iterator[Served]:
    """`rerankd serve` (gRPC only, no local model) on a free loopback port, pinned to `cpu` when given."""
    port = free_port()
    args = ["-m", "rerankd.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--no-http", "--config", str(config), *extra]
    log = workdir / f"rerankd-{port}.log"
    with serving_child(args, port, cpu, log, {"RERANKD_LOCAL_ENABLED": "false"}) as pid:
        yield Served(f"127.0.0.1:{port}", pid, log)


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# -- the measurements -------------------------------------------------------------------------------
@dataclass
class Overhead:
    rounds: int
    seconds_per_round: float
    direct: dict[str, float] = field(default_factory=dict)
    rerankd: dict[str, float] = field(default_factory=dict)
    added_p50_ms: float = 0.0
    added_p99_ms: float = 0.0
    failed: int = 0
    # The reference servers of bench/floor.py, measured in the same rounds: name -> summary.
    floor: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class BigStream:
    documents: int
    runs: list[dict[str, float]] = field(default_factory=list)


def _summary(samples: list[float], count: int) -> dict[str, float]:
    samples.sort()
    return {
        "calls": count,
        "p50_ms": percentile(samples, 50) * 1000,
        "p90_ms": percentile(samples, 90) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
    }


async def measure_overhead(
    stub: Any, session: Any, fake_url: str, rounds: int, seconds: float, floor_stubs: dict[str, Any]
) -> Overhead:
    """Alternate direct, reference-server and through-rerankd rounds (c=1, 20 documents); pool the
    latencies of each path."""
    result = Overhead(rounds, seconds)
    request = rerank_request(20)
    paths = [("direct", direct_cohere(session, fake_url + "/v2/rerank", 20, MODEL))]
    paths += [(name, grpc_rerank(floor_stub, request)) for name, floor_stub in floor_stubs.items()]
    paths.append(("rerankd", grpc_rerank(stub, request)))
    caps = Caps(requests=100_000, seconds=seconds, warmup=20)
    samples: dict[str, list[float]] = {name: [] for name, _ in paths}
    for _ in range(rounds):
        for name, call in paths:
            report = await drive(call, concurrency=1, caps=caps, samples=samples[name])
            result.failed += report.failed
    summaries = {name: _summary(values, len(values)) for name, values in samples.items()}
    result.direct = summaries.pop("direct")
    result.rerankd = summaries.pop("rerankd")
    result.floor = summaries
    result.added_p50_ms = result.rerankd["p50_ms"] - result.direct["p50_ms"]
    result.added_p99_ms = result.rerankd["p99_ms"] - result.direct["p99_ms"]
    return result


async def measure_cells(
    stub: Any,
    session: Any,
    fake_url: str,
    server_pid: int,
    concurrencies: list[int],
    documents: list[int],
    caps: Caps,
    floor_servers: dict[str, tuple[Any, int]],
) -> list[Report]:
    """Per (documents, concurrency): direct, the reference servers (20 documents only), rerankd
    Rerank and rerankd RerankStream, back to back."""
    reports = []

    def cpu_of(pid: int) -> Any:
        return (lambda: cpu_seconds(pid)) if sys.platform == "linux" else None

    server_cpu = cpu_of(server_pid)
    for count in documents:
        request = rerank_request(count)
        calls = [("direct", direct_cohere(session, fake_url + "/v2/rerank", count, MODEL), None)]
        if count == 20:
            calls += [
                (f"floor: {name}", grpc_rerank(floor_stub, request), cpu_of(pid))
                for name, (floor_stub, pid) in floor_servers.items()
            ]
        calls += [
            ("rerankd Rerank", grpc_rerank(stub, request), server_cpu),
            ("rerankd RerankStream", grpc_stream(stub, request), server_cpu),
        ]
        for concurrency in concurrencies:
            for name, call, cpu in calls:
                report = await drive(
                    call, concurrency=concurrency, caps=caps, name=name, documents=count, server_cpu=cpu
                )
                reports.append(report)
                print(report.row(), flush=True)
    return reports


async def measure_big_stream(address: str, documents: int, runs: int) -> BigStream:
    """RerankStream of `documents` with return_documents, plain and progressive, `runs` times each,
    on a channel with gRPC's default receive limit (every message must stay under 4 MiB)."""
    result = BigStream(documents)
    inner = rerank_request(documents, return_documents=True, words=64)  # ~450 bytes a document
    options = (("grpc.max_send_message_length", 64 * 1024 * 1024),)  # the request itself is large
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.RerankServiceStub(channel)
        for progressive in (False, True):
            request = pb.RerankStreamRequest(request=inner, progressive=progressive)
            for _ in range(runs):
                result.runs.append(await _one_big_stream(stub, request, documents))
    return result


async def _one_big_stream(stub: Any, request: pb.RerankStreamRequest, documents: int) -> dict[str, float]:
    started = time.perf_counter()
    first = first_final = 0.0
    messages = results = total_bytes = largest = 0
    async for reply in stub.RerankStream(request, timeout=120):
        size = reply.ByteSize()
        messages += 1
        total_bytes += size
        largest = max(largest, size)
        if reply.HasField("results"):
            now = time.perf_counter() - started
            first = first or now
            if reply.results.partial:
                continue
            first_final = first_final or now
            results += len(reply.results.results)
            if not all(r.document.text for r in reply.results.results):
                raise RuntimeError("a result came back without its document")
    elapsed = time.perf_counter() - started
    if results != documents:
        raise RuntimeError(f"expected {documents} ranked results, got {results}")
    return {
        "progressive": float(request.progressive),
        "first_result_ms": first * 1000,
        "first_ranked_ms": first_final * 1000,
        "total_ms": elapsed * 1000,
        "messages": messages,
        "results": results,
        "response_bytes": total_bytes,
        "largest_message_bytes": largest,
        "request_bytes": request.ByteSize(),
    }


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy recording `pid` for `seconds` into `out` (raw stacks); None when py-spy is missing."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    cmd = [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "250", "-f", "raw", "-o", str(out)]
    cmd.append("--gil")  # only the thread holding the GIL: Python's own work, no idle threads
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(raw: Path, top: int = 25) -> list[tuple[float, float, str]]:
    """(inclusive %, self %, function) of the `top` functions by inclusive samples."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_frame(f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
    if not total:
        return []
    rows = [
        (100.0 * n / total, 100.0 * own.get(name, 0) / total, name)
        for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1])
        if name.split(" (")[0] not in _BOILERPLATE
    ]
    return rows[:top]


_BOILERPLATE = frozenset(
    {
        "<module>", "_run_code", "_run_module_as_main", "main", "_serve", "run", "Runner.run",
        "BaseEventLoop.run_until_complete", "BaseEventLoop.run_forever", "Thread._bootstrap",
        "Thread._bootstrap_inner",
    }
)  # fmt: skip


def _frame(frame: str) -> str:
    name, _, where = frame.partition(" (")
    path = where.split(":")[0]
    for marker in ("site-packages/", "python3.11/", "rerankd/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


# -- the report ---------------------------------------------------------------------------------
def versions() -> str:
    names = ("grpcio", "protobuf", "httpx", "aiohttp", "uvloop", "orjson")
    found = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    return ", ".join(found)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def write_markdown(data: dict[str, Any], out: Path) -> None:
    over: Overhead = data["overhead"]
    cells: list[Report] = data["cells"]
    big: BigStream = data["big_stream"]
    direct = {(r.documents, r.concurrency): r for r in cells if r.name == "direct"}
    lines = [
        "# Gateway throughput and latency (issue 10)",
        "",
        "Regenerated by `make bench-gateway` (part of `make bench`) with `python -m bench.gateway`; the"
        " raw numbers are in gateway.json. How it is measured: bench/gateway.py; the soak: "
        "[soak.md](soak.md) (`make soak`).",
        "",
        f"- When: {data['when']}; took {data['took_s']:.0f} s",
        f"- Machine: {data['cpus']} CPUs ({data['cpu_model']}), Python {platform.python_version()}, "
        f"{data['versions']}; rerankd's event loop: {data['loop']}",
        f"- Load average (1, 5, 15 min) before: {data['load_before']}; after: {data['load_after']}",
        f"- Placement: {data['placement']}",
        "- The fake: bench/fastfake.py, an instant Cohere v2 API (raw asyncio HTTP/1.1 on uvloop, answers"
        " cached by document count). Direct calls: an aiohttp client with keep-alive, the same JSON body"
        " rerankd sends. rerankd: `rerankd serve` with provider `bench` (kind cohere) and its access log"
        " on (INFO, to a file).",
        "- **Noise:** this machine has 2 cores shared with other work, so absolute numbers move from run"
        " to run; compare the ratios and differences, which are measured in the same run, side by side.",
        "",
        "## Targets",
        "",
        "`floor` is the same figure for bench/floor.py's grpc.aio + aiohttp pass-through, measured in"
        " the same run and pinned the same way: a gateway with none of rerankd's features (no"
        " validation, routing, retries, limits, tracing, metrics, logs or auth), so the least any"
        " grpc.aio gateway in Python costs here. `met` is rerankd's.",
        "",
        "| target | rerankd | floor | met |",
        "|---|---|---|---|",
    ]
    passthrough = "grpc.aio + aiohttp pass-through"
    floor_over = over.floor.get(passthrough)
    floor_cells = {r.concurrency: r for r in cells if r.name == f"floor: {passthrough}" and r.documents == 20}

    def floor_added(key: str) -> str:
        return f"{floor_over[key] - over.direct[key]:.2f} ms" if floor_over else ""

    checks: list[tuple[str, str, str, bool]] = [
        (
            f"added latency p50 < {ADDED_P50_MS} ms (c=1, 20 docs)",
            f"{over.added_p50_ms:.2f} ms",
            floor_added("p50_ms"),
            over.added_p50_ms < ADDED_P50_MS,
        ),
        (
            f"added latency p99 < {ADDED_P99_MS} ms (c=1, 20 docs)",
            f"{over.added_p99_ms:.2f} ms",
            floor_added("p99_ms"),
            over.added_p99_ms < ADDED_P99_MS,
        ),
    ]
    base64 = direct.get((20, 64))
    ref = floor_cells.get(64)
    ref_share = f"{ref.rps / base64.rps:.2f}x" if ref and base64 and base64.rps else ""
    ref_tail = f"{ref.p99_ms / ref.p50_ms:.2f}x" if ref and ref.p50_ms else ""
    for r in cells:
        if r.concurrency == 64 and r.documents == 20 and r.name.startswith("rerankd"):
            share = r.rps / base64.rps if base64 and base64.rps else 0.0
            checks.append(
                (f"{r.name} c=64 RPS >= {RPS_SHARE}x direct", f"{share:.2f}x", ref_share, share >= RPS_SHARE)
            )
            tail = r.p99_ms / r.p50_ms if r.p50_ms else 0.0
            checks.append(
                (
                    f"{r.name} c=64 p99 <= {P99_OVER_P50:.0f}x p50",
                    f"{tail:.2f}x",
                    ref_tail,
                    tail <= P99_OVER_P50,
                )
            )
    failed = sum(r.failed for r in cells) + over.failed
    checks.append(("no failed calls", str(failed), "", failed == 0))
    for name, measured, reference, met in checks:
        lines.append(f"| {name} | {measured} | {reference} | {'yes' if met else '**no**'} |")
    lines += [
        "",
        "## Overhead over a direct call (concurrency 1, 20 documents)",
        "",
        f"{over.rounds} alternating rounds of {over.seconds_per_round:.1f} s each (direct, the reference"
        " servers, rerankd), latencies pooled; `added` is the path's figure minus the direct call's.",
        "",
        "| path | calls | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    paths = [("direct to the fake", over.direct)]
    paths += [(f"floor: {name}", summary) for name, summary in over.floor.items()]
    paths.append(("**through rerankd**", over.rerankd))
    for name, summary in paths:
        if summary is over.direct:
            added = " | "
        else:
            added = "{:.3f} | {:.3f}".format(
                summary["p50_ms"] - over.direct["p50_ms"], summary["p99_ms"] - over.direct["p99_ms"]
            )
        lines.append(
            f"| {name} | {summary['calls']:.0f} | {summary['p50_ms']:.3f} | {summary['p90_ms']:.3f} "
            f"| {summary['p99_ms']:.3f} | {added} |"
        )
    lines += [
        "",
        "## Throughput and latency",
        "",
        "Closed loop: each of `concurrency` workers sends a call, waits for it, sends the next; "
        f"{data['caps']['seconds']:.0f} s per cell after {data['caps']['warmup']} warm-up calls. "
        "`vs direct` is the cell's RPS over the direct RPS of the same documents and concurrency. "
        "`server CPU` is rerankd's process CPU time per call (all threads), from /proc.",
        "",
        HEADER.split("\n")[0] + " vs direct |",
        HEADER.split("\n")[1] + "---:|",
    ]
    for r in cells:
        base = direct.get((r.documents, r.concurrency))
        share = "" if r.name == "direct" or not base or not base.rps else f"{r.rps / base.rps:.2f}x"
        lines.append(f"{r.row()} {share} |")
    lines += [
        "",
        f"## A {big.documents:,}-document RerankStream with return_documents",
        "",
        "Through the Cohere adapter, whose 1,000-document limit splits it into 10 provider calls (8 at a"
        " time); read on a channel with gRPC's default 4 MiB receive limit, so no message may exceed it."
        " Plain: the ranking comes after every chunk has answered. Progressive: each chunk's partial"
        " scores are sent as it finishes (`partial`), then the ranking.",
        "",
        "| run | mode | request MB | first result ms | first ranked result ms | total ms | messages "
        "| response MB | largest message KiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, run in enumerate(big.runs, 1):
        mode = "progressive" if run["progressive"] else "plain"
        lines.append(
            f"| {i} | {mode} | {run['request_bytes'] / 1e6:.2f} | {run['first_result_ms']:.0f} "
            f"| {run['first_ranked_ms']:.0f} | {run['total_ms']:.0f} | {run['messages']:.0f} "
            f"| {run['response_bytes'] / 1e6:.2f} | {run['largest_message_bytes'] / 1024:.0f} |"
        )
    if data.get("profile"):
        lines += [
            "",
            "## Where rerankd's time goes (py-spy, Rerank, 20 documents, concurrency 64)",
            "",
            "py-spy `--gil`: samples of whichever thread holds the GIL, so Python's own work in any"
            " thread and none of the waiting; inclusive and self shares. `Thread.run` self time is"
            " gRPC's completion-queue poller thread; self time in frames that call into gRPC (the"
            " handler's own frames on uvloop) is gRPC's Cython code; C-core work that releases the"
            " GIL is not shown.",
            "",
            "| inclusive % | self % | function |",
            "|---:|---:|---|",
        ]
        lines += [f"| {inc:.1f} | {own:.1f} | `{name}` |" for inc, own, name in data["profile"]]
    if NOTES.exists():
        lines += ["", NOTES.read_text().strip()]
    out.write_text("\n".join(lines) + "\n")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, side_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    if side_cpu is not None:
        os.sched_setaffinity(0, {side_cpu})
        placement = (
            f"rerankd alone on CPU {server_cpu} (taskset -c {server_cpu}); the fake and the load generator"
            f" on CPU {side_cpu} (os.sched_setaffinity)"
        )
    else:
        placement = "one CPU: nothing pinned"
    data: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "versions": versions(),
        "placement": placement,
        "load_before": load_average(),
        "caps": {"seconds": args.seconds, "requests": args.requests, "warmup": args.warmup},
    }
    try:
        import uvloop  # noqa: F401

        data["loop"] = "uvloop"
    except ImportError:
        data["loop"] = "asyncio"
    started = time.monotonic()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    documents = [int(d) for d in args.documents.split(",")]
    caps = Caps(args.requests, args.seconds, args.warmup)
    with (
        tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp,
        fastfake.spawn(cpu=side_cpu, max_seconds=1800) as fake_url,
    ):
        config = Path(tmp) / "rerankd.yaml"
        config.write_text(CONFIG.format(url=fake_url, model=MODEL))
        with (
            rerankd_process(config, server_cpu, Path(tmp)) as served,
            floor.spawn("echo", fake_url, server_cpu) as (echo_address, echo_pid),
            floor.spawn("passthrough", fake_url, server_cpu) as (pass_address, pass_pid),
        ):
            async with contextlib.AsyncExitStack() as channels:
                connector = aiohttp.TCPConnector(limit=256)
                session = await channels.enter_async_context(aiohttp.ClientSession(connector=connector))

                async def stub_at(address: str) -> Any:
                    channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
                    await channels.enter_async_context(channel)
                    return pb_grpc.RerankServiceStub(channel)

                stub = await stub_at(served.address)
                floor_servers = {
                    "grpc.aio echo": (await stub_at(echo_address), echo_pid),
                    "grpc.aio + aiohttp pass-through": (await stub_at(pass_address), pass_pid),
                }
                print("overhead rounds ...", flush=True)
                data["overhead"] = await measure_overhead(
                    stub,
                    session,
                    fake_url,
                    args.rounds,
                    args.round_seconds,
                    {name: floor_stub for name, (floor_stub, _) in floor_servers.items()},
                )
                print(json.dumps(asdict(data["overhead"])), flush=True)
                print(HEADER, flush=True)
                data["cells"] = await measure_cells(
                    stub, session, fake_url, served.pid, concurrencies, documents, caps, floor_servers
                )
                if args.profile:
                    raw = Path(tmp) / "profile.txt"
                    spy = start_profile(served.pid, args.profile, raw)
                    if spy is not None:
                        call = grpc_rerank(stub, rerank_request(20))
                        await drive(call, concurrency=64, caps=Caps(10**6, args.profile + 1.0, 0))
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            await asyncio.to_thread(spy.wait, 30)  # it writes its file as it stops
                        data["profile"] = summarize_profile(raw) if raw.exists() else []
            print("10,000-document stream ...", flush=True)
            data["big_stream"] = await measure_big_stream(served.address, args.big_documents, args.big_runs)
            print(json.dumps(asdict(data["big_stream"])), flush=True)
    data["took_s"] = time.monotonic() - started
    data["load_after"] = load_average()
    return data


def load_json(path: Path) -> dict[str, Any]:
    """The data of a previous run, as `run` returns it."""
    raw = json.loads(path.read_text())
    raw["overhead"] = Overhead(**raw["overhead"])
    raw["cells"] = [Report(**cell) for cell in raw["cells"]]
    raw["big_stream"] = BigStream(**raw["big_stream"])
    raw["profile"] = [tuple(row) for row in raw.get("profile") or []]
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", default=str(RESULTS / "gateway.md"))
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--documents", default="20,1000")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--requests", type=int, default=50_000, help="most calls per cell")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=8, help="alternating overhead rounds")
    parser.add_argument("--round-seconds", type=float, default=1.0)
    parser.add_argument("--big-documents", type=int, default=10_000)
    parser.add_argument("--big-runs", type=int, default=3)
    parser.add_argument("--profile", type=float, default=0.0, help="seconds of py-spy profile (0: none)")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the .md from the .json beside it (no load)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render_only:
        write_markdown(load_json(out.with_suffix(".json")), out)
        print(f"wrote {out}")
        return 0
    data = asyncio.run(run(args))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_markdown(data, out)
    raw = {
        **{k: v for k, v in data.items() if k not in ("overhead", "cells", "big_stream")},
        "overhead": asdict(data["overhead"]),
        "cells": [asdict(r) for r in data["cells"]],
        "big_stream": asdict(data["big_stream"]),
    }
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
