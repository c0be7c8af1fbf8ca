"""Metric label values stay bounded whatever names callers send (issue 17, finding 3): a live
server with a generic fake provider, scraped over /metrics."""

from __future__ import annotations

import re
import urllib.request

import httpx
from rerankd import metrics
from rerankd.v1 import rerank_pb2 as pb

from tests.conftest import running_app, stub_for
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


def _calls(model: str, method: str) -> float:
    labels = {"method": method, "status": "OK", "model": model, "provider": "local"}
    return metrics.REGISTRY.get_sample_value("rerankd_calls_total", labels) or 0.0


async def test_a_name_answered_through_a_match_pattern_counts_under_its_route() -> None:
    routes = {"drop-in-labels": {"targets": [{"provider": "local"}], "match": ["labelled-rerank-*"]}}
    async with running_app(routes=routes) as app, stub_for(app) as stub:
        grpc_method = "rerankd.v1.RerankService/Rerank"
        before = _calls("drop-in-labels", grpc_method), _calls("unknown", grpc_method)
        before_http = _calls("drop-in-labels", "http/cohere-v2")
        for number in range(20):  # invented names the pattern fits: one series, the route's
            await stub.Rerank(
                pb.RerankRequest(
                    model=f"labelled-rerank-{number}", query="q", documents=[pb.Document(text="a")]
                ),
                timeout=30,
            )
        async with httpx.AsyncClient(base_url=f"http://{app.http_address}", timeout=30) as http:
            reply = await http.post(
                "/v2/rerank", json={"model": "labelled-rerank-v3.5", "query": "q", "documents": ["a"]}
            )
            assert reply.status_code == 200, reply.text
        assert _calls("drop-in-labels", grpc_method) == before[0] + 20
        assert _calls("unknown", grpc_method) == before[1]
        assert _calls("drop-in-labels", "http/cohere-v2") == before_http + 1
        for number in range(20):
            assert (
                metrics.REGISTRY.get_sample_value(
                    "rerankd_calls_total",
                    {
                        "method": grpc_method,
                        "status": "OK",
                        "model": f"labelled-rerank-{number}",
                        "provider": "local",
                    },
                )
                is None
            )


def test_an_explicit_provider_model_never_counts_under_a_pattern() -> None:
    metrics.know_targets(["patterned/m1"])
    metrics.know_patterns([("*-catch-all", "catch-route")])
    metrics.know_models(["catch-route"])
    assert metrics.model_label("x-catch-all") == "catch-route"
    assert metrics.model_label("patterned/x-catch-all") == "unknown"  # the router serves it as provider/model
    assert metrics.model_label("no-pattern-fits") == "unknown"
