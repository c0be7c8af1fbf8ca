"""Metric label values stay bounded whatever names callers send (issue 17, finding 3), and the README's
metrics table is what a live server exports (issue 22): live servers with generic fake providers,
scraped over /metrics."""

from __future__ import annotations

import contextlib
import re
import urllib.request
from pathlib import Path

import grpc
import httpx
from rerankd import metrics
from rerankd.providers import registry
from rerankd.v1 import rerank_pb2 as pb

from tests.conftest import running_app, stub_for
from tests.fakes.base import Status
from tests.fakes.generic import KIND, PROVIDER_PATH, one_target_with_metrics, provider_config
from tests.resilience.conftest import fakes, gateway, request

_ATTEMPT = re.compile(
    r'^rerankd_provider_attempts_total\{model="([^"]*)",outcome="[A-Z_]+",provider="labels"\}', re.M
)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def _attempt_models(port: int) -> list[str]:
    return _ATTEMPT.findall(_scrape(port))


async def test_invented_provider_model_names_add_no_metric_series() -> None:
    with fakes({}) as (fake,):
        settings = one_target_with_metrics(fake)
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


# -- the README's table against a live server's /metrics (issue 22) ------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"
_ROW = re.compile(r"^\| `([a-z_*]+)` \| ?(counter|gauge|histogram|) ?\| ?([a-z_, ]*?) ?\| .* \|$", re.M)
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$", re.M)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_SUFFIXES = ("_bucket", "_count", "_sum")


def readme_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """metric (or `prefix_*`) -> (type, label names), from the README's Observability table."""
    section = README.read_text().split("## Observability", 1)[1].split("\n## ", 1)[0]
    rows = {
        name: (kind, frozenset(label.strip() for label in labels.split(",") if label.strip()))
        for name, kind, labels in _ROW.findall(section)
    }
    assert len(rows) > 20, "the README's metrics table was not found"
    return rows


def exported(text: str) -> tuple[dict[str, str], dict[str, set[frozenset[str]]], list[str]]:
    """The families (name -> type), the label-name sets of each family's samples (`le` aside) and
    every label value, from Prometheus text."""
    families = dict(_TYPE.findall(text))
    labels: dict[str, set[frozenset[str]]] = {}
    values: list[str] = []
    for name, body in _SAMPLE.findall(text):
        family = name
        if family not in families:
            family = next(name.removesuffix(s) for s in _SUFFIXES if name.removesuffix(s) in families)
        pairs = _LABEL.findall(body or "")
        values += [value for _, value in pairs]
        labels.setdefault(family, set()).add(frozenset(key for key, _ in pairs if key != "le"))
    return families, labels, values


def _documented(family: str, rows: dict[str, tuple[str, frozenset[str]]]) -> str | None:
    if family in rows:
        return family
    return next((row for row in rows if row.endswith("*") and family.startswith(row[:-1])), None)


async def test_readme_metrics_table_matches_a_live_servers_metrics(tmp_path: Path) -> None:
    """Every family a live server exports is in the README with its type and labels, and every
    README row is exported. The calls below give every rerankd family at least one sample."""
    tokens = {name: f"{name}-token-0123456789abcdef" for name in ("alice", "bob", "carol")}
    (tmp_path / "tokens").write_text("".join(f"{name}: {token}\n" for name, token in tokens.items()))
    with fakes({}, {}, {"latency": 0.3}) as (broken, good, slow):
        broken.inject(*[Status(503, {"message": "down"})] * 4)
        settings = {
            "providers": {
                "broken": provider_config(broken, breaker={"consecutive_failures": 1}),
                "good": provider_config(good),
                "slow": provider_config(slow),
            },
            "routes": {
                "fb": {
                    "targets": [
                        {"provider": "broken", "model": "m0"},
                        {"provider": "good", "model": "m1", "priority": 1},
                    ],
                    "retry": {"max_attempts": 2, "initial_backoff_s": 0.01},
                },
                "hedged": {  # the slow target is hedged after 5 ms
                    "targets": [
                        {"provider": "slow", "model": "m2"},
                        {"provider": "good", "model": "m1", "priority": 1},
                    ],
                    "strategy": {"kind": "hedge", "delay_ms": 5, "budget_percent": 100},
                },
            },
            "auth_tokens_file": tmp_path / "tokens",
            "callers": {
                "alice": {},
                "bob": {"models": ["fb"], "max_documents": 1},
                "carol": {"rate_limit_rps": 0.001},
            },
            "rate_limit_burst": 1,
            "metrics_enabled": True,
            "metrics_port": 0,
        }
        registry.REGISTRY[KIND] = PROVIDER_PATH
        try:
            async with running_app(**settings) as app, stub_for(app) as stub:

                def who(name: str) -> tuple[tuple[str, str], ...]:
                    return (("authorization", f"Bearer {tokens[name]}"),)

                await stub.Rerank(request("fb", "q", ["a", "b"]), metadata=who("alice"), timeout=10)
                await stub.Rerank(request("", "q", ["a", "b"]), metadata=who("alice"), timeout=30)
                await stub.Rerank(request("hedged", "q", ["a", "b"]), metadata=who("alice"), timeout=10)
                for model, caller in (
                    ("fb", ""),
                    ("fb", "bob"),
                    ("nope", "alice"),
                    ("fb", "carol"),
                    ("fb", "carol"),
                ):
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await stub.Rerank(
                            request(model, "q", ["a", "b"]),
                            metadata=who(caller) if caller else (),
                            timeout=10,
                        )
                text = _scrape(app.metrics_port)
        finally:
            registry.REGISTRY.pop(KIND, None)
    families, labels, values = exported(text)
    rows = readme_metrics()
    for family, kind in families.items():
        row = _documented(family, rows)
        assert row is not None, f"{family} is exported but not in the README's table"
        documented_kind, documented_labels = rows[row]
        if not row.endswith("*"):
            assert documented_kind == kind, f"{family}: the README says {documented_kind}, it is a {kind}"
            assert family in labels, f"{family} has no sample: the calls above should give it one"
            assert labels[family] == {documented_labels}, f"{family}: labels {labels[family]} vs README"
    for row in rows:
        assert any(_documented(family, {row: rows[row]}) for family in families), (
            f"{row} is in the README only"
        )
    assert not [value for value in values if re.search(r"\s", value)], "a label value holds whitespace"
    assert not [family for family in families if family.endswith("_created")]


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
