"""bench/floor.py's reference servers answer real calls, and the gateway report shows them beside
rerankd (bench/gateway.py's markdown, rendered from a run's numbers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from rerankd.v1 import rerank_pb2_grpc as pb_grpc

from bench import floor, gateway
from bench.load import Report, rerank_request
from tests.support import ROOT


@pytest.mark.parametrize("mode", floor.MODES)
async def test_reference_servers_answer_rerank(mode: str, fake_url: str) -> None:
    with floor.spawn(mode, fake_url, max_seconds=60) as (address, pid):
        assert pid > 0
        async with grpc.aio.insecure_channel(address) as channel:
            reply = await pb_grpc.RerankServiceStub(channel).Rerank(rerank_request(20), timeout=10)
    assert sorted(r.index for r in reply.results) == list(range(20))
    scores = [r.relevance_score for r in reply.results]
    assert scores == sorted(scores, reverse=True)


def _report(name: str, concurrency: int, rps: float, p50: float, p99: float) -> Report:
    return Report(name, concurrency, 20, ok=100, rps=rps, p50_ms=p50, p90_ms=p99, p99_ms=p99)


def test_report_puts_the_floor_beside_each_target(tmp_path: Path) -> None:
    summary = {"calls": 100.0, "p50_ms": 0.2, "p90_ms": 0.3, "p99_ms": 0.4}
    over = gateway.Overhead(2, 1.0, direct=summary, added_p50_ms=1.0, added_p99_ms=1.5)
    over.rerankd = {"calls": 100.0, "p50_ms": 1.2, "p90_ms": 1.5, "p99_ms": 1.9}
    over.floor = {
        "grpc.aio + aiohttp pass-through": {"calls": 100.0, "p50_ms": 0.7, "p90_ms": 0.8, "p99_ms": 0.9}
    }
    cells = [
        _report("direct", 64, 5000, 10, 15),
        _report("floor: grpc.aio + aiohttp pass-through", 64, 1000, 50, 60),
        _report("rerankd Rerank", 64, 600, 100, 120),
    ]
    data = {
        "overhead": over, "cells": cells, "big_stream": gateway.BigStream(10), "when": "now", "took_s": 1.0,
        "cpus": 2, "cpu_model": "x", "versions": "", "loop": "uvloop", "load_before": "", "load_after": "",
        "placement": "", "caps": {"seconds": 1.0, "requests": 1, "warmup": 0},
    }  # fmt: skip
    out = tmp_path / "gateway.md"
    gateway.write_markdown(data, out)
    text = out.read_text()
    assert "| added latency p50 < 0.8 ms (c=1, 20 docs) | 1.00 ms | 0.50 ms | **no** |" in text
    assert "| rerankd Rerank c=64 RPS >= 0.3x direct | 0.12x | 0.20x | **no** |" in text
    assert "| floor: grpc.aio + aiohttp pass-through | 100 | 0.700 | 0.800 | 0.900 | 0.500 | 0.500 |" in text


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_pin_moves_a_child_outside_the_mask_it_inherited() -> None:
    first, second = sorted(os.sched_getaffinity(0))[:2]
    script = (
        "import os; from bench.fastfake import pin; "
        f"os.sched_setaffinity(0, {{{first}}}); print(pin({second}))"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(second)
