"""What the call-ending tests share: a server whose providers answer, hang or dawdle, and a ledger
of what the server reported about its calls (access lines, counters, ERROR lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from rerankd import metrics
from rerankd.server import App

from tests.conftest import running_app
from tests.fakes.base import Delay, Hang
from tests.fakes.cohere import CohereFake

SERVICE = "rerankd.v1.RerankService"
RERANK, STREAM = f"{SERVICE}/Rerank", f"{SERVICE}/RerankStream"


def _settings(answers: CohereFake, stuck: CohereFake, slow: CohereFake) -> dict[str, Any]:
    def provider(fake: CohereFake) -> dict[str, Any]:
        return {
            "kind": "cohere",
            "base_url": fake.url,
            "api_key": "k-endings-test",
            "models": ["rerank-v3.5"],
        }

    def route(name: str) -> dict[str, Any]:
        return {"targets": [{"provider": name, "model": "rerank-v3.5"}], "retry": {"max_attempts": 1}}

    return {
        "providers": {"answers": provider(answers), "stuck": provider(stuck), "slow": provider(slow)},
        "routes": {"hosted": route("answers"), "hanging": route("stuck"), "slow": route("slow")},
    }


@contextlib.asynccontextmanager
async def endings_app(**overrides: Any) -> AsyncIterator[App]:
    """A server with the local model and three hosted routes: `hosted` answers at once, `hanging`
    never answers (its fake hangs up after 5 s), `slow` answers after 0.3 s."""
    with CohereFake() as answers, CohereFake() as stuck, CohereFake() as slow:
        stuck.chaos(1.0, [Hang(5.0)])
        slow.chaos(1.0, [Delay(0.3)])
        async with running_app(**_settings(answers, stuck, slow), **overrides) as app:
            yield app


def counts(name: str) -> Counter[tuple[str, ...]]:
    """Every sample of counter `name` (e.g. "rerankd_calls_total") by its label values."""
    found: Counter[tuple[str, ...]] = Counter()
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] += int(sample.value)
    return found


@dataclass
class Ledger:
    """Log records and counter movements while the block runs."""

    records: list[logging.LogRecord] = field(default_factory=list)
    _calls: Counter[tuple[str, ...]] = field(default_factory=Counter)
    _caller_calls: Counter[tuple[str, ...]] = field(default_factory=Counter)

    def access(self) -> list[dict[str, Any]]:
        return [
            dict(r.access)  # type: ignore[attr-defined]
            for r in self.records
            if r.name == "rerankd.access" and r.getMessage() == "call"
        ]

    def errors(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records if r.levelno >= logging.ERROR]

    def calls_moved(self) -> Counter[tuple[str, str]]:
        """rerankd_calls_total's increments since the ledger opened, by (method, status)."""
        return _by_method_status(counts("rerankd_calls_total") - self._calls)

    def caller_calls_moved(self) -> Counter[tuple[str, str]]:
        """rerankd_caller_calls_total's increments for rerank calls (reflection calls left out:
        grpcurl makes them before its call)."""
        moved = _by_method_status(counts("rerankd_caller_calls_total") - self._caller_calls)
        return Counter({key: value for key, value in moved.items() if "ServerReflection" not in key[0]})

    async def settled(self, expected_lines: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The access lines once there are `expected_lines` of them (access lines are written on
        the loop's next turn), or all there are after `timeout`; then a moment for stragglers."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while len(self.access()) < expected_lines and loop.time() < end:  # noqa: ASYNC110 (log lines)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        return self.access()

    def check(self, lines: list[dict[str, Any]]) -> None:
        """One count per access line, with the same status, in both counters; nothing logged as an
        error; nothing INTERNAL."""
        by_line = Counter((line["method"], line["status"]) for line in lines)
        assert self.calls_moved() == by_line
        assert self.caller_calls_moved() == by_line
        assert self.errors() == []
        assert all(line["status"] != "INTERNAL" for line in lines)


def _by_method_status(moved: Counter[tuple[str, ...]]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for labels, value in moved.items():
        named = dict(labels)  # type: ignore[arg-type]
        if value > 0:
            out[(named["method"], named["status"])] += value
    return out


class _Keep(logging.Handler):
    def __init__(self, ledger: Ledger) -> None:
        super().__init__(logging.INFO)
        self.ledger = ledger

    def emit(self, record: logging.LogRecord) -> None:
        self.ledger.records.append(record)


@contextlib.contextmanager
def ledger() -> Iterator[Ledger]:
    """A Ledger of everything logged at INFO and above (any logger, gRPC's own included)."""
    book = Ledger(_calls=counts("rerankd_calls_total"), _caller_calls=counts("rerankd_caller_calls_total"))
    handler = _Keep(book)
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield book
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


async def start_upload(
    port: int, request_id: str, content_length: int, first: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw HTTP/1.1 `POST /v2/rerank` announcing `content_length` body bytes of which only `first`
    is sent: the caller then hangs up, stalls or waits, as the test decides."""
    head = (
        "POST /v2/rerank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\nX-Request-Id: {request_id}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + first)
    await writer.drain()
    return reader, writer
