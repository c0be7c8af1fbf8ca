"""Reference servers for the gateway benchmark: the least a grpc.aio gateway in Python can cost.

Two servers of RerankService.Rerank, nothing else of rerankd in them, measured by bench/gateway.py
beside rerankd, pinned the same way, so that its numbers read against what the stack itself costs:

    echo          answers every Rerank with a prebuilt 20-result response (no outbound call):
                  the cost of grpc.aio's unary path alone on this machine
    passthrough   sends the documents to the Cohere v2 fake with aiohttp (one keep-alive session,
                  orjson), parses the answer and builds the response: a gateway with no
                  validation, routing, retries, limits, tracing, metrics, logs or auth

Both run on uvloop, as `rerankd serve` does, and answer the gRPC health check. Not a product: no
error handling beyond what keeps the benchmark honest (a failed call fails).

    python -m bench.floor --mode passthrough --port 0 --fake http://127.0.0.1:PORT [--cpu N]
prints "listening 127.0.0.1:PORT" once serving; stops on SIGTERM or after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from rerankd.v1 import rerank_pb2 as pb
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from bench import fastfake

MODES = ("echo", "passthrough")


class _Echo(pb_grpc.RerankServiceServicer):
    def __init__(self) -> None:
        self.answer = pb.RerankResponse(
            results=[pb.RerankResult(index=i, relevance_score=1.0 / (i + 1)) for i in range(20)]
        )

    async def Rerank(self, request: pb.RerankRequest, context: grpc.aio.ServicerContext) -> pb.RerankResponse:
        return self.answer


class _Passthrough(pb_grpc.RerankServiceServicer):
    def __init__(self, fake_url: str) -> None:
        self.url = fake_url.rstrip("/") + "/v2/rerank"
        self.session: Any = None

    async def Rerank(self, request: pb.RerankRequest, context: grpc.aio.ServicerContext) -> pb.RerankResponse:
        import aiohttp
        import orjson

        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
        body = orjson.dumps(
            {"model": request.model or "rerank-v3.5", "query": request.query,
             "documents": [d.text for d in request.documents]}
        )  # fmt: skip
        headers = {"content-type": "application/json", "authorization": "Bearer bench-key"}
        async with self.session.post(self.url, data=body, headers=headers) as reply:
            reply.raise_for_status()
            answer = orjson.loads(await reply.read())
        response = pb.RerankResponse()
        add = response.results.add
        for item in answer["results"]:
            add(index=item["index"], relevance_score=item["relevance_score"])
        return response


async def serve(mode: str, port: int, fake_url: str, max_seconds: float) -> None:
    server = grpc.aio.server()
    servicer = _Echo() if mode == "echo" else _Passthrough(fake_url)
    pb_grpc.add_RerankServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"listening 127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    await server.stop(1)
    if isinstance(servicer, _Passthrough) and servicer.session is not None:
        await servicer.session.close()


@contextlib.contextmanager
def spawn(
    mode: str, fake_url: str, cpu: int | None = None, max_seconds: float = 3600.0
) -> Iterator[tuple[str, int]]:
    """Run a reference server in a child process (pinned to `cpu`); yields its address and pid."""
    cmd = [sys.executable, "-m", "bench.floor", "--mode", mode, "--port", "0", "--fake", fake_url]
    cmd += ["--max-seconds", str(max_seconds)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    with fastfake.listening_child(cmd, f"reference server {mode}") as (address, pid):
        yield address, pid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fake", default="", help="base URL of the Cohere v2 fake (passthrough)")
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    if args.mode == "passthrough" and not args.fake:
        parser.error("--fake is needed for passthrough")
    fastfake.pin(args.cpu)
    loop = fastfake.new_loop()
    try:
        loop.run_until_complete(serve(args.mode, args.port, args.fake, args.max_seconds))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
