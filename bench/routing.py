"""Routing strategies under load: hedged requests against a long-tailed provider, and a cascade.

    python -m bench.routing [--requests 600] [--concurrency 8] [--skip-cascade]

Hedge: a Cohere v2 fake (aiohttp, in this process) answers in 20 ms, except 5% of answers (seeded)
that take 500 ms. Two routes over the same two targets of it: `fallback` (today's behaviour: wait
for the slow answer) and `hedged` (strategy hedge, delay 60 ms, one extra attempt, budget 10%).
Each route serves the same number of 20-document requests at the same concurrency, through the
router (Router.rerank, the path both front doors share); the table has p50/p99/max latency, the
provider calls per request (the extra load) and the hedges sent/won/refused.

Cascade: 1,000 short documents, one request at a time; the route `cascade` has the embedded model
as its first stage keeping 50 and a Cohere v2 fake as its second; the route `hosted` sends all
1,000 documents to the same fake. The table has the documents the fake was sent (billed) and the
time of each stage (from the answer's attempts). Results go to bench/results/routing.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from rerankd.config import Settings
from rerankd.domain import Document, Ranked, RerankQuery
from rerankd.server import App, build

RESULTS = Path(__file__).resolve().parent / "results"
FAST_S, SLOW_S, SLOW_SHARE = 0.020, 0.500, 0.05


class TailFake:
    """Cohere v2's /v2/rerank with a latency tail; counts calls, documents and cancelled calls."""

    def __init__(self, slow_share: float = 0.0, seed: int = 1) -> None:
        self.slow_share = slow_share
        self.rng = random.Random(seed)
        self.calls = 0
        self.documents = 0
        self.cancelled = 0

    async def rerank(self, request: web.Request) -> web.Response:
        body = await request.json()
        documents = body["documents"]
        self.calls += 1
        self.documents += len(documents)
        delay = SLOW_S if self.rng.random() < self.slow_share else FAST_S
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        words = set(body["query"].split())
        results = [
            {"index": i, "relevance_score": len(words & set(str(text).split())) / (1 + len(words))}
            for i, text in enumerate(documents)
        ]
        results.sort(key=lambda r: -r["relevance_score"])
        top_n = body.get("top_n")
        return web.json_response(
            {"results": results[:top_n] if top_n else results, "meta": {"billed_units": {"search_units": 1}}}
        )


@contextlib.asynccontextmanager
async def serving(fake: TailFake) -> AsyncIterator[str]:
    app = web.Application(handler_args={"handler_cancellation": True})
    app.router.add_post("/v2/rerank", fake.rerank)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def gateway(**settings: Any) -> AsyncIterator[App]:
    app = build(Settings(host="127.0.0.1", port=0, http_enabled=False, metrics_enabled=False, **settings))
    await app.start()
    try:
        yield app
    finally:
        await app.drain(0.5)


def provider(url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "cohere", "base_url": url, "api_key": "bench-key", "max_concurrency": 256, **extra}


def query(model: str, texts: list[str], text: str = "river wine valley") -> RerankQuery:
    return RerankQuery(model=model, query=text, documents=[Document(text=t) for t in texts])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def drive(app: App, model: str, requests: int, concurrency: int, texts: list[str]) -> list[float]:
    latencies: list[float] = []
    left = iter(range(requests))

    async def worker() -> None:
        for _ in left:
            started = time.perf_counter()
            await app.router.rerank(query(model, texts), deadline=time.monotonic() + 10)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def hedge(requests: int, concurrency: int) -> list[str]:
    texts = [f"document {n} about the river and wine" for n in range(20)]
    rows, p99s, extra, cancelled = [], {}, 0.0, 0
    for route in ("fallback", "hedged"):
        fake = TailFake(SLOW_SHARE, seed=7)
        async with serving(fake) as url:
            strategy = {"kind": "hedge", "delay_ms": 60, "max_extra": 1, "budget_percent": 10}
            targets = [{"provider": "a", "model": "m"}, {"provider": "b", "model": "m", "priority": 1}]
            routes = {route: {"targets": targets, **({"strategy": strategy} if route == "hedged" else {})}}
            async with gateway(
                local_enabled=False, providers={"a": provider(url), "b": provider(url)}, routes=routes
            ) as app:
                await drive(app, route, 20, 4, texts)  # warm the connections
                fake.calls = fake.cancelled = 0
                before = {k: app.router.events.count("hedge", result=k) for k in ("sent", "won", "refused")}
                latencies = await drive(app, route, requests, concurrency, texts)
                hedges = {k: app.router.events.count("hedge", result=k) - before[k] for k in before}
        ms = [v * 1000 for v in latencies]
        p50, p99 = statistics.median(ms), percentile(ms, 0.99)
        p99s[route], extra, cancelled = p99, fake.calls / requests - 1, fake.cancelled
        rows.append(
            f"| {route} | {requests} | {p50:.1f} | {p99:.1f} | {max(ms):.1f}"
            f" | {fake.calls / requests:.3f} | {hedges['sent']} ({100 * hedges['sent'] / requests:.1f}%)"
            f" | {hedges['won']} | {hedges['refused']} | {fake.cancelled} |"
        )
    return [
        f"## Hedge: a fake answering in {FAST_S * 1000:.0f} ms, {SLOW_SHARE:.0%} in {SLOW_S * 1000:.0f} ms",
        "",
        f"Concurrency {concurrency}, 20 documents a request; hedged: delay 60 ms, max_extra 1, budget 10%.",
        "",
        "| route | requests | p50 ms | p99 ms | max ms | provider calls / request | hedges sent"
        " | hedges won | refused (budget) | calls cancelled at the fake |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Hedging cut p99 from {p99s['fallback']:.0f} ms to {p99s['hedged']:.0f} ms for"
        f" {100 * extra:.1f}% more provider calls (the budget allows 10%); {cancelled} losing calls were"
        " cancelled at the fake (their HTTP requests closed) when the other answered.",
        "",
    ]


async def cascade(rounds: int) -> list[str]:
    rng = random.Random(3)
    vocabulary = ["river", "wine", "valley", "bread", "city", "stone", "field", "market", "harbour", "road"]
    texts = [" ".join(rng.choice(vocabulary) for _ in range(6)) for _ in range(1000)]
    fake = TailFake(0.0)
    rows, billed = [], {}
    async with serving(fake) as url:
        routes = {
            "cascade": {
                "targets": [{"provider": "local"}, {"provider": "hosted", "model": "rerank-v3.5"}],
                "strategy": {"kind": "cascade", "keep_top": 50},
            },
            "hosted": {"targets": [{"provider": "hosted", "model": "rerank-v3.5"}]},
        }
        async with gateway(providers={"hosted": provider(url)}, routes=routes) as app:
            for route in ("hosted", "cascade"):
                for _ in range(rounds):
                    fake.documents = 0
                    started = time.perf_counter()
                    ranked: Ranked = await app.router.rerank(
                        query(route, texts, "river wine"), deadline=time.monotonic() + 300
                    )
                    total = (time.perf_counter() - started) * 1000
                    billed[route] = fake.documents
                    stages = " / ".join(f"{a.provider} {a.duration_ms:.0f} ms" for a in ranked.attempts)
                    rows.append(
                        f"| {route} | {len(texts)} | {fake.documents} | {stages} | {total:.0f} |"
                        f" {len(ranked.results)} |"
                    )
    return [
        "## Cascade: 1,000 documents, the embedded model keeping 50, a Cohere v2 fake second",
        "",
        "| route | documents | documents sent to (billed by) the hosted fake | time per stage | total ms"
        " | results |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"The hosted provider was sent {billed['cascade']} documents a request instead of {billed['hosted']};"
        " the first stage's time is the embedded model scoring all 1,000 on these shared cores.",
        "",
    ]


async def main(args: argparse.Namespace) -> str:
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = [f"{value:.2f}" for value in os.getloadavg()]
    lines = [
        "# Routing strategies",
        "",
        f"`python -m bench.routing` ({started}, load average {' '.join(load)} before the run; 2 shared"
        " cores, so absolute times are noisy: compare the rows of one run).",
        "",
    ]
    lines += await hedge(args.requests, args.concurrency)
    if not args.skip_cascade:
        lines += await cascade(args.cascade_rounds)
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--cascade-rounds", type=int, default=2)
    parser.add_argument("--skip-cascade", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "routing.md"))
    arguments = parser.parse_args()
    text = asyncio.run(main(arguments))
    Path(arguments.out).write_text(text)
    print(text)
