"""The monitoring that ships (deploy/prometheus/) against real tools: a real Prometheus (Debian's
package) scrapes a live rerankd on 127.0.0.1 with the shipped rules loaded; promtool lints the
/metrics text, checks the rules and runs their unit tests (rerankd-rules.test.yml).

`make test` installs prometheus and promtool when they are missing (mk/prometheus.mk); a test that
finds them missing fails, naming that target, rather than skipping.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.deployfiles import DEPLOY
from tests.fakes.generic import one_target_with_metrics
from tests.resilience.conftest import fakes, gateway, request

RULES = DEPLOY / "prometheus" / "rerankd-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "rerankd-rules.test.yml"
SCRAPE_INTERVAL_S = 1
READY_WITHIN_S = 60.0  # generous: two cores shared by the whole test suite


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `make prometheus-tools` installs Debian's prometheus package")
    return found


def _promtool(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("promtool"), *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_shipped_rules_pass_promtool_check_rules() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_shipped_rules_pass_their_unit_tests() -> None:
    tested = _promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert (
        alerts
        == fired
        == {
            "RerankdHighErrorRatio",
            "RerankdHighP99Latency",
            "RerankdBreakerOpen",
            "RerankdLocalQueueFull",
            "RerankdScrapeDown",
        }
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read()


async def _query(http: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    reply = await http.get("/api/v1/query", params={"query": expr})
    reply.raise_for_status()
    body = reply.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


async def test_a_real_prometheus_scrapes_rerankd_and_promtool_accepts_the_metrics(tmp_path: Path) -> None:
    prometheus = _tool("prometheus")
    with fakes({}) as (fake,):
        settings = one_target_with_metrics(fake)
        async with gateway(**settings) as (app, stub):
            for _ in range(3):
                await stub.Rerank(request("r", "q", ["a", "b"]), timeout=10)
            text = _scrape(app.metrics_port)
            linted = _promtool("check", "metrics", stdin=text)
            assert linted.returncode == 0 and not linted.stdout.strip(), linted.stdout + linted.stderr

            web_port = _free_port()
            config = {
                "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "rerankd",
                        "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
                        "static_configs": [{"targets": [f"127.0.0.1:{app.metrics_port}"]}],
                    }
                ],
            }
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
            checked = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
            assert checked.returncode == 0, checked.stdout + checked.stderr
            process = await asyncio.create_subprocess_exec(
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{web_port}",
                "--log.level=warn",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=5) as http:
                    up, calls = await _wait_for_scrapes(http, process)
                    build = await _query(http, 'rerankd_build_info{job="rerankd"}')
                    process_cpu = await _query(http, 'process_cpu_seconds_total{job="rerankd"}')
                    created = await _query(http, '{job="rerankd", __name__=~".+_created"}')
                    rules = (await http.get("/api/v1/rules")).json()["data"]["groups"]
            finally:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 20)
                except TimeoutError:
                    process.kill()
                    await process.wait()
    assert [float(s["value"][1]) for s in up] == [1.0]
    (ok,) = calls
    assert (
        ok["metric"]["method"] == "rerankd.v1.RerankService/Rerank" and ok["metric"]["provider"] == "labels"
    )
    assert float(ok["value"][1]) >= 3
    assert build and build[0]["metric"]["version"] and float(build[0]["value"][1]) == 1.0
    assert process_cpu, "the process collector is not on rerankd's registry"
    assert created == []  # no *_created series
    loaded = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
    assert len(loaded) == 5 and set(loaded.values()) == {"ok"}, loaded


async def _wait_for_scrapes(
    http: httpx.AsyncClient, process: asyncio.subprocess.Process
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`up` and the OK rerank calls, once Prometheus has scraped them (a few intervals, bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_WITHIN_S
    while True:
        if process.returncode is not None:
            stderr = await process.stderr.read() if process.stderr else b""
            pytest.fail(f"prometheus exited {process.returncode}: {stderr.decode()[-2000:]}")
        try:
            up = await _query(http, 'up{job="rerankd"}')
            # The registry is the process's: other tests' series may be there too.
            calls = await _query(http, 'rerankd_calls_total{job="rerankd", status="OK", model="r"}')
            if up and calls:
                return up, calls
        except httpx.TransportError:
            pass  # not listening yet
        if loop.time() > deadline:
            pytest.fail(f"prometheus did not scrape rerankd within {READY_WITHIN_S:.0f} s")
        await asyncio.sleep(SCRAPE_INTERVAL_S / 2)
