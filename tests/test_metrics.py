"""Metric label values stay bounded whatever names callers send (issue 17, finding 3): a live
server with a generic fake provider, scraped over /metrics."""

from __future__ import annotations

import re
import urllib.request

from rerankd import metrics

from tests.fakes.generic import provider_config
from tests.resilience.conftest import fakes, gateway, request

_ATTEMPT = re.compile(
    r'^rerankd_provider_attempts_total\{model="([^"]*)",outcome="[A-Z_]+",provider="labels"\}', re.M
)


def _attempt_models(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return _ATTEMPT.findall(response.read().decode())


async def test_invented_provider_model_names_add_no_metric_series() -> None:
    with fakes({}) as (fake,):
        settings = {
            "providers": {"labels": provider_config(fake)},
            "routes": {"r": {"targets": [{"provider": "labels", "model": "m1"}]}},
            "metrics_enabled": True,
            "metrics_port": 0,
        }
        async with gateway(**settings) as (app, stub):
            await stub.Rerank(request("r", "q", ["a", "b"]), timeout=10)
            await stub.Rerank(request("labels/invented-0", "q", ["a", "b"]), timeout=10)
            first = _attempt_models(app.metrics_port)
            for number in range(1, 200):
                await stub.Rerank(request(f"labels/invented-{number}", "q", ["a", "b"]), timeout=10)
            after = _attempt_models(app.metrics_port)
    assert sorted(first) == sorted(after) == ["m1", "other"]  # one series per configured target, one more
    assert len(fake.requests) == 201  # the invented names were served, just not labelled


def test_breaker_and_fallback_labels_outside_the_configuration_are_other() -> None:
    metrics.on_resilience_event(
        "breaker", {"target": "labels/invented-x", "from_state": "closed", "to_state": "open"}
    )
    metrics.on_resilience_event(
        "fallback", {"route": "invented-route", "from_target": "a/b", "to_target": "c/d"}
    )
    assert metrics.REGISTRY.get_sample_value("rerankd_breaker_state", {"target": "labels/invented-x"}) is None
    assert metrics.REGISTRY.get_sample_value("rerankd_breaker_state", {"target": "other"}) == 2
    assert metrics.REGISTRY.get_sample_value("rerankd_fallbacks_total", {"route": "invented-route"}) is None
