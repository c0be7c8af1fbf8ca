"""A real HTTP server on 127.0.0.1 for fake providers, with per-test fault injection.

Each fake subclasses `FakeProvider` and implements `handle()` in the provider's documented wire
format. Tests queue faults with `inject()`; each request takes the next queued fault (or none):

    with CohereFake() as fake:
        fake.inject(Status(429, {"message": "slow down"}, {"Retry-After": "1"}), Hang(5))
        ...  # first call gets 429, second hangs, later calls are answered normally

`chaos(rate, faults, seed)` adds random faults after the queue runs dry: each later request fails
with probability `rate`, with one of `faults` picked at random (seeded, for load tests).

The server runs in a background thread (stdlib ThreadingHTTPServer), so synchronous SDKs and
the async service can both call it. `requests` records every request; `closed_early` counts
requests whose client went away while the fake was hanging (cancellation tests).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_WORD = re.compile(r"[a-z0-9]+")


def fake_score(query: str, text: str) -> float:
    """Deterministic relevance in (0, 1): share of query words found in the text, plus a hash tie-break."""
    q = set(_WORD.findall(query.lower()))
    d = set(_WORD.findall(text.lower()))
    overlap = len(q & d) / max(len(q), 1)
    tie = int(hashlib.sha256(f"{query}\x00{text}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return round(0.05 + 0.9 * overlap + 0.04 * tie, 6)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received: float = field(default_factory=time.monotonic)  # arrival time (spacing tests)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list -> JSON; bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)


class Fault:
    """Base for injected faults."""


@dataclass
class Status(Fault):
    """Answer with this status, JSON body and headers instead of the normal answer."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hang(Fault):
    """Send nothing for `seconds` (then close); records whether the client closed first."""

    seconds: float = 30.0


@dataclass
class Delay(Fault):
    """Answer normally after `seconds`."""

    seconds: float


@dataclass
class Reset(Fault):
    """Close the connection with a TCP reset, no answer."""


@dataclass
class Malformed(Fault):
    """Answer 200 with a body that is not JSON."""


class FakeProvider:
    """Base class: a provider's HTTP API on a free loopback port."""

    name = "fake"

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.closed_early = 0
        self._faults: deque[Fault] = deque()
        self._chaos: tuple[float, tuple[Fault, ...], random.Random] | None = None
        self.faults_served = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- to implement ---------------------------------------------------------------------------
    def handle(self, request: Recorded) -> Reply:
        raise NotImplementedError

    # -- control --------------------------------------------------------------------------------
    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def chaos(self, rate: float, faults: Sequence[Fault], seed: int = 0) -> None:
        """After the queued faults, fail each request with probability `rate` (random fault)."""
        with self._lock:
            self._chaos = (rate, tuple(faults), random.Random(seed)) if rate > 0 and faults else None

    def _next_fault(self) -> Fault | None:
        """The fault for the request being served (call with the lock held)."""
        fault: Fault | None = None
        if self._faults:
            fault = self._faults.popleft()
        elif self._chaos is not None:
            rate, faults, rng = self._chaos
            fault = rng.choice(faults) if rng.random() < rate else None
        if fault is not None:
            self.faults_served += 1
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._chaos = None
            self.faults_served = 0
            self.requests.clear()
            self.closed_early = 0

    @property
    def url(self) -> str:
        assert self._server is not None, "fake not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeProvider:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stall)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with fake._lock:
                    fake.requests.append(rec)
                    fault = fake._next_fault()
                if isinstance(fault, Reset):
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.connection.close()
                    self.close_connection = True
                    return
                if isinstance(fault, Hang):
                    self._hang(fault.seconds)
                    return
                if isinstance(fault, Delay):
                    time.sleep(fault.seconds)
                if isinstance(fault, Status):
                    reply = Reply(fault.status, fault.body, fault.headers)
                elif isinstance(fault, Malformed):
                    reply = Reply(200, b'{"results": [ this is not json')
                else:
                    try:
                        reply = fake.handle(rec)
                    except Exception as exc:  # a bug in the fake must show up, not hang the test
                        reply = Reply(500, {"message": f"fake error: {exc!r}"})
                self._send(reply)

            def _hang(self, seconds: float) -> None:
                self.connection.settimeout(0.05)
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    try:
                        if self.connection.recv(1, socket.MSG_PEEK) == b"":
                            with fake._lock:
                                fake.closed_early += 1
                            break
                    except TimeoutError:
                        continue
                    except OSError:
                        with fake._lock:
                            fake.closed_early += 1
                        break
                self.close_connection = True

            def _send(self, reply: Reply) -> None:
                if isinstance(reply.body, bytes):
                    data = reply.body
                    ctype = "application/json"
                elif reply.body is None:
                    data = b""
                    ctype = "application/json"
                else:
                    data = json.dumps(reply.body).encode()
                    ctype = "application/json"
                self.send_response(reply.status)
                headers = {"content-type": ctype, **{k.lower(): v for k, v in reply.headers.items()}}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = _serve
            do_GET = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name=f"fake-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bearer_ok(request: Recorded) -> bool:
    """An Authorization header of the form 'Bearer <non-empty token>'."""
    value = request.headers.get("authorization", "")
    return value.startswith("Bearer ") and len(value) > len("Bearer ") + 3


@dataclass(frozen=True)
class FakeSpec:
    """How the shared contract suite drives one provider kind against its fake.

    Every `tests/fakes/<kind>.py` exposes `CONTRACT = FakeSpec(...)`; the suite in
    `tests/providers/test_contract.py` discovers them and runs the same cases on each.
    """

    kind: str  # provider kind in rerankd.providers.registry.REGISTRY
    fake: type[FakeProvider]
    model: str  # a model name the fake accepts
    # provider config (the YAML `providers.<name>` mapping) pointing at a running fake
    config: Any  # Callable[[str], dict[str, Any]]: fake.url -> config mapping
    # the provider's documented error reply for an HTTP status and message
    error_reply: Any  # Callable[[int, str], Reply]
    max_documents: int | None = None  # the provider's per-call document limit, if any
    object_documents: bool = False  # whether documents may carry named fields natively
