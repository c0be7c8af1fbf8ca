"""bench/load.py cannot rot: its caps, its counting and its report, against a live in-process server.

rerankd runs in-process (running_app) with the Cohere adapter pointed at bench/fastfake.py's
instant fake, served on the test's own loop; the CLI runs as a child process against the same.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bench import load
from bench.load import Caps
from tests.conftest import running_app
from tests.support import ROOT


def _settings(url: str) -> dict[str, object]:
    provider = {"kind": "cohere", "base_url": url, "api_key": "bench-key", "models": ["rerank-v3.5"]}
    route = {"targets": [{"provider": "bench", "model": "rerank-v3.5"}]}
    return {
        "providers": {"bench": provider},
        "routes": {"default": route},
        "local_enabled": False,
        "http_enabled": False,
    }


async def test_drive_stops_at_the_count_cap() -> None:
    calls = 0

    async def call() -> float | None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return None

    report = await load.drive(call, concurrency=4, caps=Caps(requests=50, seconds=30, warmup=7))
    assert calls == 57  # warm-up calls are made but not counted
    assert (report.sent, report.ok, report.failed) == (50, 50, 0)
    assert report.elapsed_s < 5 and report.rps == pytest.approx(50 / report.elapsed_s)


async def test_drive_stops_at_the_time_cap_and_counts_failures() -> None:
    calls = 0

    async def call() -> float | None:
        nonlocal calls
        calls += 1
        number = calls  # this call's own number: the other worker moves `calls` during the sleep
        await asyncio.sleep(0.01)
        if number % 3 == 0:
            raise TimeoutError
        return 0.002

    started = time.monotonic()
    report = await load.drive(call, concurrency=2, caps=Caps(requests=10**6, seconds=0.3))
    took = time.monotonic() - started
    assert 0.3 <= report.elapsed_s < 0.3 + 0.5 and took < 1.5
    assert report.sent == calls < 200
    assert report.ok + report.failed == report.sent and report.errors == {"TIMEOUT": report.failed}
    assert report.failed == calls // 3
    assert 10 <= report.p50_ms <= report.p90_ms <= report.p99_ms <= report.max_ms
    assert report.first_result_p50_ms == pytest.approx(2.0)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [load.percentile(values, q) for q in (0, 50, 90, 99, 100)] == [1.0, 50.0, 90.0, 99.0, 100.0]
    assert load.percentile([], 50) == 0.0
    with pytest.raises(ValueError):
        Caps(requests=0, seconds=1)


async def test_load_against_a_live_server(fake_url: str) -> None:
    async with running_app(**_settings(fake_url)) as app:
        target = app.addresses[0]
        counted = await load.run_grpc(target, "rerank", [1, 4], [20], Caps(requests=40, seconds=10), "")
        streamed = await load.run_grpc(target, "stream", [4], [20], Caps(requests=40, seconds=10), "")
        timed = await load.run_grpc(target, "rerank", [4], [20], Caps(requests=10**6, seconds=0.5), "")
    for report in (*counted, *streamed):
        assert (report.sent, report.ok, report.failed) == (40, 40, 0), report
        assert 0 < report.p50_ms <= report.p90_ms <= report.p99_ms and report.rps > 0
    assert [r.concurrency for r in counted] == [1, 4] and counted[0].first_result_p50_ms is None
    assert streamed[0].first_result_p50_ms is not None and streamed[0].name == "rerankd RerankStream"
    [report] = timed
    assert 0.5 <= report.elapsed_s < 5.0 and 0 < report.sent < 10**6 and report.failed == 0
    assert report.row().startswith("| rerankd Rerank | 4 | 20 | ")


async def test_direct_calls_reach_the_fake(fake_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        call = load.direct_cohere(session, fake_url + "/v2/rerank", 20, "rerank-v3.5")
        report = await load.drive(call, concurrency=2, caps=Caps(requests=30, seconds=10))
        async with session.get(fake_url + "/stats") as reply:
            stats = await reply.json()
    assert (report.ok, report.failed) == (30, 0) and stats["requests"] >= 30


async def test_cli_writes_its_report(fake_url: str, tmp_path: Path) -> None:
    out = tmp_path / "reports.json"
    async with running_app(**_settings(fake_url)) as app:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.load",
            "--target",
            app.addresses[0],
            "--method",
            "rerank,stream",
            "--concurrency",
            "2",
            "--documents",
            "20",
            "--requests",
            "25",
            "--seconds",
            "5",
            "--warmup",
            "0",
            "--json",
            str(out),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        printed, _ = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, printed.decode()
    table = printed.decode().splitlines()
    assert table[0] == load.HEADER.splitlines()[0] and len(table) == 4
    reports = json.loads(out.read_text())
    assert [(r["name"], r["sent"], r["ok"]) for r in reports] == [
        ("rerankd Rerank", 25, 25),
        ("rerankd RerankStream", 25, 25),
    ]
