"""A generic rerank fake (Cohere v2's wire shape) and a small test-only provider that calls it.

The router tests need a provider whose limits they choose: `GenericFake(max_documents=1000)`
refuses longer lists with 400, so a correct answer to 5,000 documents proves the router chunked
them; `latency` slows every normal answer (concurrency tests). Scores are `fake_score`, so a test
can compute the exact expected ranking of any list.

    POST /v2/rerank {"model", "query", "documents": [str], "top_n"?}
    200 {"results": [{"index", "relevance_score"}], "meta": {"billed_units": {"search_units": 1}}}
    4xx/5xx {"message": ...}

`GenericProvider` (kind "generic") is registered only by the tests that use it (see
tests/resilience/conftest.py); its typed options: `max_documents` sets
`Capabilities.max_documents`, and like Cohere it refuses truncation NONE (UNSUPPORTED_BY_PROVIDER)
unless `truncation_none`.
"""

from __future__ import annotations

import time
from typing import Any

from rerankd.config import ProviderConfig, ProviderOptions
from rerankd.domain import Scored, Truncation, Usage
from rerankd.providers.base import Capabilities, ProviderCall, ProviderResult
from rerankd.providers.http import HttpProvider, HttpReply, HttpRequest, check_indices, encode_json
from rerankd.providers.jsonwire import unsupported

from tests.fakes.base import FakeProvider, Recorded, Reply, fake_score

KIND = "generic"
PROVIDER_PATH = "tests.fakes.generic:GenericProvider"


class GenericFake(FakeProvider):
    """Scores with `fake_score`; refuses more than `max_documents` documents with 400."""

    name = "generic"

    def __init__(self, max_documents: int | None = None, latency: float = 0.0) -> None:
        super().__init__()
        self.max_documents = max_documents
        self.latency = latency
        self.answered = 0

    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path != "/v2/rerank":
            return Reply(404, {"message": f"{request.method} {request.path} not found"})
        try:
            body = request.json()
        except ValueError:
            return Reply(400, {"message": "body is not JSON"})
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not query.strip():
            return Reply(400, {"message": "query is required"})
        if not isinstance(documents, list) or not documents or not all(isinstance(d, str) for d in documents):
            return Reply(400, {"message": "documents must be a non-empty list of strings"})
        if self.max_documents is not None and len(documents) > self.max_documents:
            return Reply(400, {"message": f"at most {self.max_documents} documents per request"})
        if self.latency:
            time.sleep(self.latency)
        ranked = sorted(
            ((i, fake_score(query, text)) for i, text in enumerate(documents)), key=lambda p: (-p[1], p[0])
        )
        top_n = body.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            ranked = ranked[:top_n]
        with self._lock:
            self.answered += 1
        return Reply(
            200,
            {
                "results": [{"index": i, "relevance_score": s} for i, s in ranked],
                "meta": {"billed_units": {"search_units": 1}},
            },
        )


class GenericOptions(ProviderOptions):
    max_documents: int | None = None
    truncation_none: bool = False


class GenericProvider(HttpProvider):
    """Test-only provider speaking GenericFake's wire format (no credentials)."""

    kind = KIND
    Options = GenericOptions

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(max_documents=self.options.max_documents)

    def build_request(self, call: ProviderCall) -> HttpRequest:
        if call.truncation is Truncation.NONE and not self.options.truncation_none:
            raise unsupported(self.name, "truncation", "this fake cannot refuse long documents")
        body: dict[str, Any] = {
            "model": call.model,
            "query": call.query,
            "documents": [doc.text for doc in call.documents],
        }
        if call.top_n is not None:
            body["top_n"] = call.top_n
        return HttpRequest(
            "POST", f"{self.base_url}/v2/rerank", self.json_headers(call, {}), encode_json(body)
        )

    def parse_response(self, call: ProviderCall, reply: HttpReply) -> ProviderResult:
        body = reply.json()
        pairs = [(int(r["index"]), float(r["relevance_score"])) for r in body["results"]]
        check_indices(self.name, pairs, len(call.documents))
        units = int(body.get("meta", {}).get("billed_units", {}).get("search_units", 0))
        return ProviderResult(
            [Scored(i, s) for i, s in pairs],
            Usage(search_units=units, documents=len(call.documents)),
            call.model,
        )


def provider_config(fake: GenericFake, *, truncation_none: bool = False, **extra: Any) -> dict[str, Any]:
    """The `providers.<name>` mapping for a GenericProvider pointing at `fake`."""
    options: dict[str, Any] = {"max_documents": fake.max_documents} if fake.max_documents else {}
    if truncation_none:
        options["truncation_none"] = True
    config: dict[str, Any] = {"kind": KIND, "base_url": fake.url, "models": [], "options": options}
    config.update(extra)
    ProviderConfig.model_validate(config)  # fail early on a typo in a test
    return config


FAST_RETRY = {"max_attempts": 2, "initial_backoff_s": 0.01, "max_backoff_s": 0.02}


def two_targets(first: GenericFake, second: GenericFake, **route: Any) -> dict[str, Any]:
    """Settings: route "r" over `first` (model m1) then `second` (m2, priority 1), fast retries;
    `route` adds to or overrides the route's keys (retry, strategy, ...)."""
    return {
        "providers": {"first": provider_config(first), "second": provider_config(second)},
        "routes": {
            "r": {
                "targets": [
                    {"provider": "first", "model": "m1"},
                    {"provider": "second", "model": "m2", "priority": 1},
                ],
                "retry": FAST_RETRY,
                **route,
            }
        },
    }


def one_target_with_metrics(fake: GenericFake) -> dict[str, Any]:
    """Settings: route "r" over provider "labels" (model m1 of `fake`), /metrics on a free port."""
    return {
        "providers": {"labels": provider_config(fake)},
        "routes": {"r": {"targets": [{"provider": "labels", "model": "m1"}]}},
        "metrics_enabled": True,
        "metrics_port": 0,
    }


def expected_ranking(query: str, texts: list[str], top_n: int | None = None) -> list[int]:
    """Indices of `texts` best first, as scoring them all at once with `fake_score` gives."""
    order = sorted(range(len(texts)), key=lambda i: (-fake_score(query, texts[i]), i))
    return order[:top_n] if top_n else order


__all__ = ["GenericFake", "GenericProvider", "expected_ranking", "provider_config"]
