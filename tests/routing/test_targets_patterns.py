"""Route `match` patterns (drop-in model names): what a name resolves to, in which order of
precedence, under which route's policy, and what the config refuses."""

from __future__ import annotations

import pydantic
import pytest
from rerankd import errors
from rerankd.config import RouteConfig
from rerankd.routing import Router


class _Provider:
    kind = "fake"

    def __init__(self, name: str, *models: str) -> None:
        self.name = name
        self._models = models

    def models(self) -> tuple[str, ...]:
        return self._models


def router(routes: dict[str, dict]) -> Router:
    providers = {"a": _Provider("a", "served-a"), "b": _Provider("b", "rerank-served")}
    configs = {alias: RouteConfig.model_validate(route) for alias, route in routes.items()}
    return Router.from_config(providers, configs)  # type: ignore[arg-type]


def labels(r: Router, name: str) -> list[str]:
    return [t.label for t in r.resolve(name)]


def test_a_pattern_answers_names_nothing_else_serves() -> None:
    r = router({"default": {"targets": [{"provider": "a", "model": "m"}], "match": ["rerank-*", "bge-*"]}})
    assert labels(r, "rerank-v3.5") == labels(r, "bge-reranker-v2-m3") == ["a/m"]
    assert r.matched_route("rerank-v3.5") == "default"
    with pytest.raises(errors.NotFound) as caught:
        r.resolve("gpt-4o")
    assert "patterns: rerank-*, bge-*" in caught.value.message


def test_aliases_served_names_and_provider_model_come_before_patterns() -> None:
    r = router(
        {
            "default": {"targets": [{"provider": "a", "model": "m"}], "match": ["*"]},
            "rerank-v3.5": {"targets": [{"provider": "b", "model": "x"}]},
        }
    )
    assert labels(r, "rerank-v3.5") == ["b/x"]  # an alias
    assert labels(r, "rerank-served") == ["b/rerank-served"]  # a provider's own model name
    assert labels(r, "b/other") == ["b/other"]  # provider/model
    assert labels(r, "anything-else") == ["a/m"]
    assert r.matched_route("rerank-served") == ""


def test_the_first_route_in_config_order_wins_and_its_policy_applies() -> None:
    r = router(
        {
            "cohere-names": {
                "targets": [{"provider": "b", "model": "x"}],
                "match": ["rerank-*"],
                "cache": {"enabled": True},
            },
            "everything": {"targets": [{"provider": "a", "model": "m"}], "match": ["rerank-v3.5", "*"]},
        }
    )
    assert labels(r, "rerank-v3.5") == ["b/x"]
    assert r.policy("rerank-v3.5").cache is not None  # cohere-names' cache
    assert labels(r, "jina-reranker-m0") == ["a/m"] and r.policy("jina-reranker-m0").cache is None


def test_patterns_are_case_sensitive() -> None:
    r = router({"default": {"targets": [{"provider": "a", "model": "m"}], "match": ["rerank-*"]}})
    with pytest.raises(errors.NotFound):
        r.resolve("Rerank-v3.5")


@pytest.mark.parametrize("pattern", ["", "has space", "x" * 257, "tab\tin"])
def test_bad_patterns_are_refused_by_the_config(pattern: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="model name pattern"):
        RouteConfig.model_validate({"targets": [{"provider": "a"}], "match": [pattern]})
