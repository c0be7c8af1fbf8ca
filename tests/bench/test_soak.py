"""The soak harness (make soak) cannot rot: its verdict, the server's sampler, and a short real run."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from bench import serve, soak
from tests.support import ROOT


def _samples(rss: list[int], fds: list[int]) -> list[dict[str, float]]:
    return [
        {"t": 10.0 * n, "rss_kb": r, "fds": f, "tasks": 12, "threads": 3}
        for n, (r, f) in enumerate(zip(rss, fds, strict=True))
    ]


def test_verdict_passes_a_flat_run_after_warm_up() -> None:
    samples = _samples([50_000, 80_000, 81_000, 80_500, 82_000], [20, 30, 31, 29, 30])
    result = soak.verdict(samples, [soak.Interval(ok=100)] * 4, warmup_s=10.0)
    assert result["passed"] and result["failed"] == 0 and result["calls"] == 400
    assert result["rss_growth"] == pytest.approx(2_000 / 80_000)  # measured from the end of warm-up


@pytest.mark.parametrize(
    ("rss", "fds", "failed"),
    [
        ([80_000, 80_000, 84_100], [30, 30, 30], 0),  # RSS grew 5.1%
        ([80_000, 80_000, 80_000], [30, 35, 39], 0),  # descriptors climbing
        ([80_000, 80_000, 80_000], [30, 30, 30], 1),  # a caller saw a failure
    ],
)
def test_verdict_fails_growth_leaks_and_failures(rss: list[int], fds: list[int], failed: int) -> None:
    intervals = [soak.Interval(ok=100), soak.Interval(ok=100, failed=failed)]
    assert not soak.verdict(_samples(rss, fds), intervals, warmup_s=0.0)["passed"]


async def test_sampler_reads_this_process() -> None:
    sample = serve.sample(started=0.0)
    assert sample["rss_kb"] > 10_000 and sample["fds"] >= 3 and sample["tasks"] >= 1
    assert sample["threads"] >= 1


@pytest.mark.slow
async def test_a_short_soak_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "soak.md"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.soak",
        *("--seconds", "3", "--every", "1", "--concurrency", "4", "--fault-rate", "0.05"),
        *("--out", str(out)),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    printed, _ = await asyncio.wait_for(child.communicate(), 120)
    # Exit 1 would only say the verdict failed: a 3 s run is mostly warm-up, so its RSS may still grow.
    assert child.returncode in (0, 1) and b"wrote" in printed, printed.decode()
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["verdict"]["failed"] == 0 and data["verdict"]["calls"] > 0
    assert data["fake"]["faults"] > 0  # faults were injected, and retried away
    assert len(data["samples"]) >= 3 and all(s["rss_kb"] > 0 for s in data["samples"])
    assert "| zero failed calls | 0 of" in out.read_text()
