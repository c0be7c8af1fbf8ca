"""The router as a coordinator: strategies built from the route config, cascade stage order."""

from __future__ import annotations

import random

from rerankd.config import RouteConfig
from rerankd.routing import Router
from rerankd.routing.strategies import Cascade, Fallback, Hedge

from tests.routing.scripted import ScriptedProvider


def build(routes: dict[str, dict[str, object]]) -> Router:
    providers = {name: ScriptedProvider(name) for name in ("a", "b")}
    configs = {alias: RouteConfig.model_validate(route) for alias, route in routes.items()}
    return Router.from_config(providers, configs)


TWO = [{"provider": "a", "model": "m"}, {"provider": "b", "model": "m"}]


def test_each_route_gets_the_strategy_its_config_names() -> None:
    router = build(
        {
            "plain": {"targets": TWO},
            "hedged": {"targets": TWO, "strategy": {"kind": "hedge", "delay_ms": 10}},
            "staged": {"targets": TWO, "strategy": {"kind": "cascade", "keep_top": 5}},
        }
    )
    assert isinstance(router.policy("plain").strategy, Fallback)
    assert isinstance(router.policy("hedged").strategy, Hedge)
    assert isinstance(router.policy("staged").strategy, Cascade)
    assert router.policy("hedged").strategy is router.policy("hedged").strategy  # its budget persists
    assert isinstance(router.policy("a/m").strategy, Fallback)  # direct names: the default


def test_a_cascade_keeps_its_stages_in_the_order_listed_whatever_the_weights() -> None:
    staged = [{"provider": "b", "model": "m", "weight": 1}, {"provider": "a", "model": "m", "weight": 100}]
    router = build({"staged": {"targets": staged, "strategy": {"kind": "cascade", "keep_top": 5}}})
    router.names._rng = random.Random(0)
    orders = {tuple(t.provider.name for t in router.resolve("staged")) for _ in range(50)}
    assert orders == {("b", "a")}
