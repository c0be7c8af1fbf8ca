"""Two versions of rerankd side by side in one run: this tree and another checkout (a baseline).

    python -m bench.ab --baseline /path/to/other/checkout [--rounds 5] [--seconds 3]

Each round starts `rerankd serve` from each tree in turn (the other tree through PYTHONPATH=its
service/), with the same fast fake behind it and the placement of bench/gateway.py (rerankd alone
on the first CPU, the fake and this load generator on the second), and measures Rerank with 20
documents at concurrency 1 and 64: RPS, p50, and rerankd's CPU per call. The two versions
alternate within every round, so both see the same background load; medians over the rounds are
written to bench/results/ab.md (and printed). A change to the hot path states these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from bench import fastfake
from bench.gateway import CONFIG, MODEL, RESULTS, ROOT, cpu_seconds, free_port, load_average, serving_child
from bench.load import CHANNEL_OPTIONS, Caps, drive, grpc_rerank, rerank_request

CELLS = ((1, "c=1"), (64, "c=64"))


@contextlib.contextmanager
def _server(tree: Path, config: Path, cpu: int | None, workdir: Path, name: str) -> Any:
    port = free_port()
    args = ["-m", "rerankd.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-http"]
    args += ["--config", str(config)]
    env = {"RERANKD_LOCAL_ENABLED": "false", "PYTHONPATH": str(tree / "service")}
    with serving_child(args, port, cpu, workdir / f"{name}-{port}.log", env) as pid:
        yield f"127.0.0.1:{port}", pid


async def _measure(address: str, pid: int, caps: Caps) -> dict[str, dict[str, float]]:
    request = rerank_request(20)
    out: dict[str, dict[str, float]] = {}
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.RerankServiceStub(channel)
        for concurrency, label in CELLS:
            report = await drive(
                grpc_rerank(stub, request),
                concurrency=concurrency,
                caps=caps,
                server_cpu=lambda: cpu_seconds(pid),
            )
            if report.failed:
                raise RuntimeError(f"{label}: {report.failed} calls failed: {report.errors}")
            out[label] = {"rps": report.rps, "p50_ms": report.p50_ms, "cpu_ms": report.server_cpu_ms or 0.0}
    return out


async def run(args: argparse.Namespace, baseline: Path) -> str:
    trees = {"baseline": baseline, "this tree": ROOT}
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, side_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    if side_cpu is not None:
        os.sched_setaffinity(0, {side_cpu})
    caps = Caps(requests=200_000, seconds=args.seconds, warmup=50)
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        name: {label: {"rps": [], "p50_ms": [], "cpu_ms": []} for _, label in CELLS} for name in trees
    }
    load = [load_average()]
    with (
        tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp,
        fastfake.spawn(cpu=side_cpu, max_seconds=1800) as url,
    ):
        config = Path(tmp) / "rerankd.yaml"
        config.write_text(CONFIG.format(url=url, model=MODEL))
        for number in range(args.rounds):
            order = list(trees.items()) if number % 2 == 0 else list(reversed(trees.items()))
            for name, tree in order:
                with _server(tree, config, server_cpu, Path(tmp), name.replace(" ", "-")) as (address, pid):
                    measured = await _measure(address, pid, caps)
                for label, figures in measured.items():
                    for key, value in figures.items():
                        samples[name][label][key].append(value)
                print(f"round {number + 1} {name}: {measured}", flush=True)
    load.append(load_average())
    return _render(args, trees, samples, load)


def _render(args: argparse.Namespace, trees: dict[str, Path], samples: Any, load: list[str]) -> str:
    median = statistics.median
    lines = [
        "# rerankd A/B: this tree against a baseline, side by side",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python -m bench.ab --baseline "
        f"{args.baseline} --rounds {args.rounds} --seconds {args.seconds}`; baseline {trees['baseline']}.",
        f"Rerank, 20 documents, against bench/fastfake.py; rerankd alone on one CPU; {args.rounds} rounds"
        f" of {args.seconds:g} s per cell, the versions alternating in each round; medians. Load average"
        f" {load[0]} before, {load[1]} after.",
        "",
        "| cell | baseline RPS / p50 ms / CPU ms per call | this tree | RPS change | p50 change |",
        "|---|---|---|---|---|",
    ]
    for _, label in CELLS:
        base = {key: median(values) for key, values in samples["baseline"][label].items()}
        new = {key: median(values) for key, values in samples["this tree"][label].items()}
        lines.append(
            f"| Rerank {label} | {base['rps']:,.0f} / {base['p50_ms']:.2f} / {base['cpu_ms']:.2f}"
            f" | {new['rps']:,.0f} / {new['p50_ms']:.2f} / {new['cpu_ms']:.2f}"
            f" | {_change(new['rps'], base['rps'])} | {_change(new['p50_ms'], base['p50_ms'])} |"
        )
    return "\n".join(lines) + "\n"


def _change(new: float, base: float) -> str:
    return f"{100 * (new / base - 1):+.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--baseline", required=True, help="another checkout of rerankd (its service/ is used)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", default=str(RESULTS / "ab.md"))
    args = parser.parse_args()
    text = asyncio.run(run(args, Path(args.baseline).resolve()))
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
