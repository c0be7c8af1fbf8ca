"""A soak: steady load through rerankd to a fake provider that injects faults, watching for growth.

`make soak` (python -m bench.soak) runs rerankd (bench/serve.py: `rerankd serve` plus a sampler)
pinned to the first CPU and the fast fake with injected faults (HTTP 500/503/429, connection
resets, 20 ms delays) plus the load generator on the second, for 10 minutes by default. The route
retries a failed call up to 4 times, so no caller should ever see a fault. Every `--every` seconds
(10) the server records its RSS, open file descriptors, asyncio tasks and threads, and the load
generator the calls that succeeded and failed. Written: bench/results/soak.md (the table and the
verdict), soak.png (the plot) and soak.json.

Pass: zero failed calls; RSS growth under 5% from the end of the warm-up (the first minute, or
the first sixth of a shorter run) to the end; descriptors flat (within +-8 of the first sample
after the warm-up, i.e. a connection or two coming and going, never a steady climb).
Load: `--concurrency` closed-loop workers, each call drawn (seeded) as Rerank with 20 documents
(80%), RerankStream with 20 documents (15%) or Rerank with 1,000 documents (5%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from bench import fastfake, gateway
from bench.gateway import MODEL, ROOT, free_port, load_average
from bench.load import CHANNEL_OPTIONS, grpc_rerank, grpc_stream, rerank_request

RESULTS = ROOT / "bench" / "results"
RSS_GROWTH_LIMIT = 0.05
FD_SLACK = 8
# The gateway bench's config, plus retries so that injected faults are absorbed.
CONFIG = gateway.CONFIG + "    retry: {{max_attempts: 4, initial_backoff_s: 0.01, max_backoff_s: 0.1}}\n"


@dataclass
class Interval:
    """Calls finished in one sampling interval, by the load generator's clock."""

    ok: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@contextmanager
def server(
    config: Path, cpu: int | None, stats: Path, every: float, workdir: Path
) -> Iterator[tuple[str, int]]:
    port = free_port()
    args = ["-m", "bench.serve", "--config", str(config), "--port", str(port)]
    args += ["--stats", str(stats), "--every", str(every)]
    with gateway.serving_child(args, port, cpu, workdir / "rerankd.log", {}, stop_wait_s=20) as pid:
        yield f"127.0.0.1:{port}", pid


async def drive_soak(
    address: str, seconds: float, every: float, concurrency: int, max_calls: int, seed: int
) -> list[Interval]:
    """Steady closed-loop load for `seconds` (at most `max_calls` calls), tallied per interval."""
    rng = random.Random(seed)
    intervals = [Interval() for _ in range(int(seconds / every) + 2)]
    started = time.monotonic()
    deadline = started + seconds
    issued = 0
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.RerankServiceStub(channel)
        small, large = rerank_request(20), rerank_request(1000)
        kinds = [grpc_rerank(stub, small), grpc_stream(stub, small), grpc_rerank(stub, large)]

        async def worker() -> None:
            nonlocal issued
            while issued < max_calls and time.monotonic() < deadline:
                issued += 1
                call = rng.choices(kinds, weights=(80, 15, 5))[0]
                try:
                    async with asyncio.timeout(30):
                        await call()
                    failure = None
                except Exception as exc:
                    failure = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
                slot = intervals[min(int((time.monotonic() - started) / every), len(intervals) - 1)]
                if failure is None:
                    slot.ok += 1
                else:
                    slot.failed += 1
                    slot.errors[failure] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return intervals


def verdict(samples: list[dict[str, float]], intervals: list[Interval], warmup_s: float) -> dict[str, Any]:
    after = [s for s in samples if s["t"] >= warmup_s] or samples[-1:]
    base, last = after[0], after[-1]
    fds = [s["fds"] for s in after]
    growth = (last["rss_kb"] - base["rss_kb"]) / base["rss_kb"] if base["rss_kb"] else 0.0
    failed = sum(i.failed for i in intervals)
    fd_spread = max(abs(f - base["fds"]) for f in fds)
    return {
        "calls": sum(i.ok for i in intervals) + failed,
        "failed": failed,
        "errors": dict(sum((i.errors for i in intervals), Counter())),
        "warmup_s": warmup_s,
        "rss_start_mb": base["rss_kb"] / 1024,
        "rss_end_mb": last["rss_kb"] / 1024,
        "rss_max_mb": max(s["rss_kb"] for s in after) / 1024,
        "rss_growth": growth,
        "fds_min": min(fds),
        "fds_max": max(fds),
        "fd_spread": fd_spread,
        "tasks_min": min(s["tasks"] for s in after),
        "tasks_max": max(s["tasks"] for s in after),
        "passed": failed == 0 and growth < RSS_GROWTH_LIMIT and fd_spread <= FD_SLACK,
    }


def plot(
    samples: list[dict[str, float]], intervals: list[Interval], every: float, loaded: int, out: Path
) -> bool:
    """RSS, descriptors, tasks and calls per second over time as a PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    series = (
        ([s["rss_kb"] / 1024 for s in samples], "RSS (MiB)"),
        ([s["fds"] for s in samples], "open fds"),
        ([s["tasks"] for s in samples], "asyncio tasks"),
    )
    for axis, (values, label) in zip(axes, series, strict=False):
        axis.plot(t, values, marker=".")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0, top=max(values) * 1.15 + 1)
        axis.grid(alpha=0.3)
    rates = [i.ok / every for i in intervals[: len(samples)]][:loaded]  # not the quiet tail after the load
    axes[3].plot([(n + 0.5) * every / 60 for n in range(len(rates))], rates, marker=".", color="tab:green")
    axes[3].set_ylabel("calls/s")
    axes[3].set_xlabel("minutes")
    axes[3].grid(alpha=0.3)
    fig.suptitle("rerankd soak: steady load, injected provider faults")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def write_markdown(data: dict[str, Any], out: Path) -> None:
    v = data["verdict"]
    samples, intervals = data["samples"], data["intervals"]
    lines = [
        "# Soak (issue 10)",
        "",
        "Regenerated by `make soak` (python -m bench.soak; not part of `make test` or `make bench`). How:"
        " bench/soak.py.",
        "",
        f"- When: {data['when']}; {data['seconds'] / 60:.1f} minutes, samples every {data['every']:.0f} s",
        f"- Placement: {data['placement']}; load average before {data['load_before']}, after "
        f"{data['load_after']}",
        f"- Load: {data['concurrency']} closed-loop workers; per call (seeded) Rerank 20 documents 80%,"
        " RerankStream 20 documents 15%, Rerank 1,000 documents 5%",
        f"- Faults: the fake failed {data['fake']['faults']} of its {data['fake']['requests']} requests"
        f" ({data['fault_rate']:.0%} drawn from HTTP 500, 503, 429, connection reset, 20 ms delay); the"
        " route retries up to 4 times",
        "",
        "## Verdict",
        "",
        "| check | measured | met |",
        "|---|---|---|",
        f"| zero failed calls | {v['failed']} of {v['calls']:,} {v['errors'] or ''} "
        f"| {'yes' if v['failed'] == 0 else '**no**'} |",
        f"| RSS growth after warm-up ({v['warmup_s']:.0f} s) < {RSS_GROWTH_LIMIT:.0%} "
        f"| {v['rss_start_mb']:.1f} -> {v['rss_end_mb']:.1f} MiB ({v['rss_growth']:+.2%}; max "
        f"{v['rss_max_mb']:.1f}) | {'yes' if v['rss_growth'] < RSS_GROWTH_LIMIT else '**no**'} |",
        f"| open fds flat (within +-{FD_SLACK}) | {v['fds_min']}..{v['fds_max']} "
        f"| {'yes' if v['fd_spread'] <= FD_SLACK else '**no**'} |",
        f"| asyncio tasks (report) | {v['tasks_min']}..{v['tasks_max']} | |",
        "",
        "![soak plot](soak.png)" if data.get("plotted") else "(no plot: matplotlib is not installed)",
        "",
        "## Samples",
        "",
        "| minute | RSS MiB | open fds | tasks | threads | calls ok in the interval | failed |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, s in enumerate(samples):
        interval = intervals[n - 1] if 0 < n <= len(intervals) else None
        ok = interval.ok if interval else ""
        failed = interval.failed if interval else ""
        lines.append(
            f"| {s['t'] / 60:.2f} | {s['rss_kb'] / 1024:.1f} | {s['fds']} | {s['tasks']} | {s['threads']} "
            f"| {ok} | {failed} |"
        )
    out.write_text("\n".join(lines) + "\n")


async def fake_stats(url: str) -> dict[str, int]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url + "/stats") as reply:
        return dict(await reply.json())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-calls", type=int, default=2_000_000)
    parser.add_argument("--fault-rate", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--out", default=str(RESULTS / "soak.md"))
    args = parser.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, side_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    if side_cpu is not None:
        os.sched_setaffinity(0, {side_cpu})
    placement = (
        f"rerankd on CPU {server_cpu} (taskset), the fake and the load generator on CPU {side_cpu}"
        if side_cpu is not None
        else "one CPU: nothing pinned"
    )
    data: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": args.seconds,
        "every": args.every,
        "concurrency": args.concurrency,
        "fault_rate": args.fault_rate,
        "placement": placement,
        "load_before": load_average(),
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp,
        fastfake.spawn(
            cpu=side_cpu, fault_rate=args.fault_rate, seed=args.seed, max_seconds=args.seconds + 600
        ) as url,
    ):
        config = Path(tmp) / "rerankd.yaml"
        config.write_text(CONFIG.format(url=url, model=MODEL))
        stats = Path(tmp) / "stats.jsonl"
        with server(config, server_cpu, stats, args.every, Path(tmp)) as (address, _pid):
            intervals = asyncio.run(
                drive_soak(address, args.seconds, args.every, args.concurrency, args.max_calls, args.seed)
            )
            time.sleep(min(args.every, 10.0) + 0.5)  # one more sample after the load
        data["fake"] = asyncio.run(fake_stats(url))
        samples = [json.loads(line) for line in stats.read_text().splitlines() if line.strip()]
    data["load_after"] = load_average()
    warmup = min(60.0, args.seconds / 6)
    data["samples"], data["intervals"] = samples, intervals[: max(len(samples) - 1, 0)]
    data["verdict"] = verdict(samples, intervals, warmup)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    loaded = int(args.seconds / args.every)  # intervals under load
    data["plotted"] = plot(samples, data["intervals"], args.every, loaded, out.with_suffix(".png"))
    write_markdown(data, out)
    raw = {k: v for k, v in data.items() if k != "intervals"}
    raw["intervals"] = [{"ok": i.ok, "failed": i.failed, "errors": dict(i.errors)} for i in data["intervals"]]
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    print(json.dumps(data["verdict"]))
    print(f"wrote {out}")
    return 0 if data["verdict"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
