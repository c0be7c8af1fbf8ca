"""A bounded closed-loop load generator for rerankd (grpc.aio) and, for comparison, a provider's HTTP API.

`drive()` runs `concurrency` workers that each send one call, wait for it, and send the next, until
`Caps.requests` calls were issued or `Caps.seconds` passed (whichever comes first; a call in flight
at the time cap finishes, within `Caps.call_timeout_s`). A warm-up of `Caps.warmup` calls goes first
and is not counted. The `Report` holds calls sent, succeeded and failed (by status code), requests
per second (successful calls over the measured time) and p50/p90/p99 latency in milliseconds, and
for RerankStream the median time to the first message with results.

Callers:
    grpc_rerank(stub, request)       one unary Rerank
    grpc_stream(stub, request)       one RerankStream, read to the end (latency = last message)
    direct_cohere(session, url, ...) the same documents straight to a Cohere v2 API over HTTP (aiohttp)

CLI (prints a table; --json writes the reports):
    python -m bench.load --target 127.0.0.1:50051 --method rerank,stream --concurrency 1,16,64 \
        --documents 20,1000 --requests 20000 --seconds 5 [--model NAME] [--cpu N]
    python -m bench.load --direct http://127.0.0.1:PORT ...   (a Cohere v2 API instead of rerankd)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)
QUERY = "what keeps a gateway fast under load"
_WORDS = (
    *("latency", "throughput", "gateway", "provider", "rerank", "document", "query", "score", "cache"),
    *("retry", "deadline", "stream", "chunk", "breaker", "pool", "socket", "event", "loop", "python"),
    *("grpc", "http", "json", "budget", "tail", "median", "search", "relevance"),
)

# A call returns the seconds to its first result (streams) or None; it raises on failure.
Call = Callable[[], Awaitable[float | None]]


@dataclass(frozen=True)
class Caps:
    """Bounds of one run: at most `requests` calls issued and `seconds` of measured time."""

    requests: int
    seconds: float
    warmup: int = 0
    call_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.requests < 1 or not 0 < self.seconds <= 3600 or self.warmup < 0:
            raise ValueError("caps need requests >= 1, 0 < seconds <= 3600 and warmup >= 0")


@dataclass
class Report:
    """The outcome of one run."""

    name: str
    concurrency: int
    documents: int
    sent: int = 0
    ok: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    first_result_p50_ms: float | None = None
    server_cpu_ms: float | None = None  # CPU the server used per successful call, when measured
    errors: dict[str, int] = field(default_factory=dict)

    def row(self) -> str:
        first = "" if self.first_result_p50_ms is None else f"{self.first_result_p50_ms:.2f}"
        cpu = "" if self.server_cpu_ms is None else f"{self.server_cpu_ms:.3f}"
        return (
            f"| {self.name} | {self.concurrency} | {self.documents} | {self.ok} | {self.failed} | "
            f"{self.rps:,.0f} | {self.p50_ms:.2f} | {self.p90_ms:.2f} | {self.p99_ms:.2f} | {first} | {cpu} |"
        )


HEADER = (
    "| target | concurrency | docs | ok | failed | RPS | p50 ms | p90 ms | p99 ms "
    "| first result p50 ms | server CPU ms/call |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of already sorted values; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(math.ceil(q / 100.0 * len(sorted_values)), 1)
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name
    if isinstance(exc, TimeoutError):
        return "TIMEOUT"
    return type(exc).__name__


async def drive(
    call: Call,
    *,
    concurrency: int,
    caps: Caps,
    name: str = "",
    documents: int = 0,
    clock: Callable[[], float] = time.perf_counter,
    server_cpu: Callable[[], float] | None = None,
    samples: list[float] | None = None,
) -> Report:
    """Run `call` from `concurrency` workers within `caps` (see the module docstring).

    `server_cpu` returns the server's CPU seconds so far (read before and after the measured
    part); `samples`, when given, receives every measured latency in seconds.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    report = Report(name, concurrency, documents)
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    firsts: list[float] = []

    async def one(record: bool) -> None:
        started = clock()
        try:
            async with asyncio.timeout(caps.call_timeout_s):
                first = await call()
        except Exception as exc:
            if record:
                errors[_error_name(exc)] += 1
            return
        if record:
            latencies.append(clock() - started)
            if first is not None:
                firsts.append(first)

    issued = 0

    async def worker(limit: int, deadline: float, record: bool) -> None:
        nonlocal issued
        while issued < limit and clock() < deadline:
            issued += 1
            await one(record)

    if caps.warmup:
        issued = 0
        warm_deadline = clock() + caps.seconds
        await asyncio.gather(*(worker(caps.warmup, warm_deadline, False) for _ in range(concurrency)))
    issued = 0
    cpu_before = server_cpu() if server_cpu is not None else 0.0
    started = clock()
    deadline = started + caps.seconds
    await asyncio.gather(*(worker(caps.requests, deadline, True) for _ in range(concurrency)))
    report.elapsed_s = clock() - started
    if server_cpu is not None and latencies:
        report.server_cpu_ms = (server_cpu() - cpu_before) * 1000.0 / len(latencies)
    if samples is not None:
        samples.extend(latencies)
    report.sent = issued
    report.ok = len(latencies)
    report.failed = sum(errors.values())
    report.errors = dict(errors)
    report.rps = report.ok / report.elapsed_s if report.elapsed_s > 0 else 0.0
    latencies.sort()
    report.p50_ms, report.p90_ms, report.p99_ms = (percentile(latencies, q) * 1000.0 for q in (50, 90, 99))
    report.max_ms = (latencies[-1] if latencies else 0.0) * 1000.0
    if firsts:
        firsts.sort()
        report.first_result_p50_ms = percentile(firsts, 50) * 1000.0
    return report


# -- requests ------------------------------------------------------------------------------------
def document_texts(count: int, words: int = 24) -> list[str]:
    """`count` deterministic documents of `words` words each (about 170 bytes at 24 words)."""
    n = len(_WORDS)
    return [" ".join(_WORDS[(i * 7 + j * 3) % n] for j in range(words)) + f" #{i}" for i in range(count)]


def rerank_request(
    documents: int, *, model: str = "", return_documents: bool = False, words: int = 24
) -> pb.RerankRequest:
    return pb.RerankRequest(
        model=model,
        query=QUERY,
        documents=[pb.Document(id=f"d{i}", text=t) for i, t in enumerate(document_texts(documents, words))],
        return_documents=return_documents,
    )


def grpc_rerank(stub: pb_grpc.RerankServiceStub, request: pb.RerankRequest, timeout: float = 30.0) -> Call:
    expected = len(request.documents) if not request.top_n else min(request.top_n, len(request.documents))

    async def call() -> float | None:
        reply = await stub.Rerank(request, timeout=timeout)
        if len(reply.results) != expected:
            raise RuntimeError(f"expected {expected} results, got {len(reply.results)}")
        return None

    return call


def grpc_stream(
    stub: pb_grpc.RerankServiceStub,
    request: pb.RerankRequest,
    timeout: float = 30.0,
    results_per_message: int = 0,
) -> Call:
    message = pb.RerankStreamRequest(request=request, results_per_message=results_per_message)
    expected = len(request.documents) if not request.top_n else min(request.top_n, len(request.documents))

    async def call() -> float | None:
        started = time.perf_counter()
        first: float | None = None
        received = 0
        async for reply in stub.RerankStream(message, timeout=timeout):
            if reply.HasField("results"):
                if first is None:
                    first = time.perf_counter() - started
                received += len(reply.results.results)
        if received != expected:
            raise RuntimeError(f"expected {expected} results, got {received}")
        return first

    return call


def direct_cohere(session: Any, url: str, documents: int, model: str, words: int = 24) -> Call:
    """POST the Cohere v2 body rerankd would send to `url` (/v2/rerank) with an aiohttp session."""
    import orjson

    texts = document_texts(documents, words)
    headers = {"authorization": "Bearer bench-key", "content-type": "application/json"}

    async def call() -> float | None:
        body = orjson.dumps({"model": model, "query": QUERY, "documents": texts})
        async with session.post(url, data=body, headers=headers) as response:
            payload = orjson.loads(await response.read())
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
        if len(payload["results"]) != documents:
            raise RuntimeError("wrong number of results")
        return None

    return call


# -- runs ----------------------------------------------------------------------------------------
async def run_grpc(
    target: str,
    method: str,
    concurrencies: Sequence[int],
    documents: Sequence[int],
    caps: Caps,
    model: str,
    server_cpu: Callable[[], float] | None = None,
) -> list[Report]:
    """Every (documents, concurrency) cell of `method` ("rerank" or "stream") against rerankd at `target`."""
    reports = []
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.RerankServiceStub(channel)
        for count in documents:
            request = rerank_request(count, model=model)
            call = grpc_rerank(stub, request) if method == "rerank" else grpc_stream(stub, request)
            for concurrency in concurrencies:
                name = f"rerankd {'Rerank' if method == 'rerank' else 'RerankStream'}"
                reports.append(
                    await drive(
                        call,
                        concurrency=concurrency,
                        caps=caps,
                        name=name,
                        documents=count,
                        server_cpu=server_cpu,
                    )
                )
    return reports


async def run_direct(
    base_url: str, concurrencies: Sequence[int], documents: Sequence[int], caps: Caps, model: str
) -> list[Report]:
    """The same cells straight to a Cohere v2 API at `base_url` (aiohttp client, keep-alive)."""
    import aiohttp

    reports = []
    connector = aiohttp.TCPConnector(limit=max(concurrencies) * 2, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        for count in documents:
            call = direct_cohere(session, base_url.rstrip("/") + "/v2/rerank", count, model)
            for concurrency in concurrencies:
                reports.append(
                    await drive(call, concurrency=concurrency, caps=caps, name="direct", documents=count)
                )
    return reports


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bounded load against rerankd (or a provider's HTTP API).")
    parser.add_argument("--target", default="127.0.0.1:50051", help="rerankd's gRPC address")
    parser.add_argument("--direct", default="", help="a Cohere v2 base URL to load instead of rerankd")
    parser.add_argument("--method", default="rerank", help="rerank, stream or both (comma-separated)")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--documents", default="20,1000")
    parser.add_argument("--requests", type=int, default=20_000, help="most calls per cell")
    parser.add_argument("--seconds", type=float, default=5.0, help="most measured seconds per cell")
    parser.add_argument("--warmup", type=int, default=50, help="uncounted calls before each cell")
    parser.add_argument("--model", default="", help="model name (rerankd) or provider model (direct)")
    parser.add_argument("--cpu", type=int, default=None, help="pin the load generator to this CPU")
    parser.add_argument("--json", default="", help="write the reports here as JSON")
    args = parser.parse_args(argv)
    if args.cpu is not None and args.cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {args.cpu})
    caps = Caps(args.requests, args.seconds, args.warmup)
    concurrencies, documents = _ints(args.concurrency), _ints(args.documents)

    async def run() -> list[Report]:
        if args.direct:
            return await run_direct(args.direct, concurrencies, documents, caps, args.model or "rerank-v3.5")
        reports = []
        for method in args.method.split(","):
            reports += await run_grpc(args.target, method.strip(), concurrencies, documents, caps, args.model)
        return reports

    reports = asyncio.run(run())
    print(HEADER)
    for report in reports:
        print(report.row())
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(r) for r in reports], out, indent=1)
    return 0 if all(r.failed == 0 for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
