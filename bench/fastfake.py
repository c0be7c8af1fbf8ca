"""An instant Cohere v2 rerank server for benchmarks: raw asyncio HTTP/1.1, keep-alive, one process.

`POST /v2/rerank` answers at once with a score for every document (or `top_n` of them), in
Cohere v2's shape; answers are cached by (document count, top_n), so the cost per request is
parsing the body and one write. `GET /stats` returns {"requests": n, "faults": n}. Anything else
is 404. It checks only that a bearer token is present (401 otherwise).

Faults for soaks (`--fault-rate`, seeded): each request fails with that probability with one of
HTTP 500, 503, 429 (retry-after-ms: 5), a connection reset, or a 20 ms delay before a normal answer.

Run it as its own process, pinned to one core (`--cpu N` calls os.sched_setaffinity), so that it
does not compete with rerankd: `python -m bench.fastfake --port 0 --cpu 1`. It prints
`listening 127.0.0.1:PORT` on stdout once bound and exits on SIGTERM/SIGINT or after
`--max-seconds`. `spawn()` does all of this from Python; `FastFake().start()` serves on the caller's
own loop instead (tests). The stdlib fakes in tests/fakes check every request the way the real
APIs do; this one is only fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson

ROOT = Path(__file__).resolve().parent.parent
FAULT_KINDS = ("500", "503", "429", "reset", "slow")
_SLOW_S = 0.020
_MAX_HEAD = 64 * 1024
_MAX_BODY = 256 * 1024 * 1024
_MAX_CACHED = 4096
_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found", 411: b"Length Required"}
_REASONS |= {429: b"Too Many Requests", 500: b"Internal Server Error", 503: b"Service Unavailable"}


@dataclass
class Counters:
    """What the fake has served (reported by GET /stats)."""

    requests: int = 0
    faults: int = 0


def _response(status: int, body: bytes, extra: bytes = b"") -> bytes:
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n" % (
        status,
        _REASONS.get(status, b"Error"),
        len(body),
        extra,
    )
    return head + body


def _error(status: int, message: str, extra: bytes = b"") -> bytes:
    return _response(status, orjson.dumps({"message": message}), extra)


class Answers:
    """Cohere v2 answers by (document count, top_n), encoded once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int | None], bytes] = {}

    def for_body(self, body: bytes) -> bytes:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, "invalid request: could not parse the request body as JSON")
        documents = request.get("documents") if isinstance(request, dict) else None
        if not isinstance(documents, list) or not documents or not request.get("query"):
            return _error(400, "invalid request: query and documents are required")
        top_n = request.get("top_n")
        key = (len(documents), top_n if isinstance(top_n, int) and top_n > 0 else None)
        answer = self._cache.get(key)
        if answer is None:
            answer = self._cache[key] = self._encode(*key)
            if len(self._cache) > _MAX_CACHED:
                self._cache.pop(next(iter(self._cache)))
        return answer

    @staticmethod
    def _encode(count: int, top_n: int | None) -> bytes:
        shown = count if top_n is None else min(top_n, count)
        results = [{"index": i, "relevance_score": round(1.0 - i / (count + 1), 6)} for i in range(shown)]
        meta = {"api_version": {"version": "2"}, "billed_units": {"search_units": -(-count // 100)}}
        return _response(200, orjson.dumps({"id": "bench", "results": results, "meta": meta}))


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: Content-Length bodies, requests answered in order."""

    def __init__(self, server: FastFake) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a delayed answer is pending: later requests wait in the buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass
        with contextlib.suppress(OSError):
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._drain()

    def _drain(self) -> None:
        while not self.busy and self.transport is not None and not self.transport.is_closing():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    self.transport.close()
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            line, _, rest = head.partition("\r\n")
            headers = {}
            for item in rest.split("\r\n"):
                name, _, value = item.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", ""):
                self.transport.write(_error(411, "send a content-length"))
                self.transport.close()
                return
            length = int(headers.get("content-length") or 0)
            if length > _MAX_BODY:
                self.transport.close()
                return
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self._answer(line, headers, body)

    def _answer(self, line: str, headers: dict[str, str], body: bytes) -> None:
        assert self.transport is not None
        method, _, rest = line.partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        server = self.server
        if method == "GET" and path == "/stats":
            stats = {"requests": server.counters.requests, "faults": server.counters.faults}
            self.transport.write(_response(200, orjson.dumps(stats)))
            return
        if method != "POST" or path != "/v2/rerank":
            self.transport.write(_error(404, f"{method} {path} is not a valid endpoint"))
            return
        server.counters.requests += 1
        if not headers.get("authorization", "").startswith("Bearer "):
            self.transport.write(_error(401, "invalid api token"))
            return
        fault = server.next_fault()
        if fault is None:
            self.transport.write(server.answers.for_body(body))
        elif fault == "reset":
            sock = self.transport.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.transport.abort()
        elif fault == "slow":
            self.busy = True
            answer = server.answers.for_body(body)
            asyncio.get_running_loop().call_later(_SLOW_S, self._later, answer)
        elif fault == "429":
            self.transport.write(_error(429, "slow down", b"retry-after-ms: 5\r\n"))
        else:
            self.transport.write(_error(int(fault), "injected fault"))

    def _later(self, answer: bytes) -> None:
        self.busy = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)
            self._drain()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class FastFake:
    """The server: answers, counters and the fault plan."""

    def __init__(self, fault_rate: float = 0.0, seed: int = 0, kinds: Sequence[str] = FAULT_KINDS) -> None:
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        self.answers = Answers()
        self.counters = Counters()
        self.fault_rate = fault_rate
        self.kinds = tuple(kinds)
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None

    def next_fault(self) -> str | None:
        if self.fault_rate <= 0 or self._rng.random() >= self.fault_rate:
            return None
        self.counters.faults += 1
        return self._rng.choice(self.kinds)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on the running loop; returns the base URL (http://host:port)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=1024)
        bound = self._server.sockets[0].getsockname()[1]
        return f"http://{host}:{bound}"

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def serve(self, host: str, port: int, max_seconds: float) -> None:
        """Listen, say `listening host:port` on stdout, and serve until a signal or `max_seconds`."""
        url = await self.start(host, port)
        print(f"listening {url.removeprefix('http://')}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max_seconds)
        self.close()


def pin(cpu: int | None) -> str:
    """Pin this process to `cpu` when given and present; returns the CPUs it may run on, as text.
    Any CPU of the machine may be named, not only those of the inherited mask (a child of the load
    generator, itself pinned to another CPU, is moved to the CPU asked for)."""
    if cpu is not None:
        with contextlib.suppress(OSError):  # no such CPU here (or not allowed): stay where we are
            os.sched_setaffinity(0, {cpu})
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


def stop_child(proc: subprocess.Popen[Any], wait_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if `proc` has not exited within `wait_s` (every bench child)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def listening_child(cmd: list[str], what: str) -> Iterator[tuple[str, int]]:
    """Run `cmd` (a bench server that prints "listening HOST:PORT" once ready) from the repo root;
    yields that address and the child's pid, and stops the child afterwards."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("listening "):
            raise RuntimeError(f"{what} did not start (said {line!r})")
        yield line.split(" ", 1)[1], proc.pid
    finally:
        stop_child(proc)


@contextlib.contextmanager
def spawn(
    cpu: int | None = None, fault_rate: float = 0.0, seed: int = 0, max_seconds: float = 3600.0
) -> Iterator[str]:
    """Run the fake in a child process; yields its base URL (http://127.0.0.1:PORT)."""
    cmd = [sys.executable, "-m", "bench.fastfake", "--port", "0", "--max-seconds", str(max_seconds)]
    cmd += ["--fault-rate", str(fault_rate), "--seed", str(seed)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    with listening_child(cmd, "fast fake") as (address, _):
        yield "http://" + address


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="fault kinds to draw from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="exit after this long")
    args = parser.parse_args(argv)
    pin(args.cpu)
    fake = FastFake(args.fault_rate, args.seed, [k for k in args.faults.split(",") if k])
    loop = new_loop()
    started = time.monotonic()
    try:
        loop.run_until_complete(fake.serve(args.host, args.port, args.max_seconds))
    finally:
        loop.close()
    print(
        f"served {fake.counters.requests} requests ({fake.counters.faults} faults) "
        f"in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
