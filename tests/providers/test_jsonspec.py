"""The declarative JSON adapter (providers/jsonspec.py): what a spec implies, beyond the contract suite."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.domain import Document, Truncation
from rerankd.providers.base import ProviderCall
from rerankd.providers.http import HttpClient, HttpReply
from rerankd.providers.jsonspec import JsonProvider, JsonSpec, Truncate, sigmoid

from tests.providers.replies import reply

OFFLINE = HttpClient()
DOCS = [Document("a"), Document("b"), Document("c")]


class Spoken(JsonProvider):
    kind = "cohere"  # any registered kind: only its (empty) options are looked up
    spec = JsonSpec(
        path="/score",
        auth="optional-bearer",
        query_object="text",
        documents="items",
        document_object="content",
        top_n=None,
        truncate=Truncate("cut", end="END", none=None),
        fixed={"echo": False},
        defaults={"mode": "fast"},
        results="ranked",
        index="i",
        score="s",
        usage=("billing", "units"),
        usage_unit="search_units",
        answers_model=False,
        error_keys=("problem",),
        error_kind=("kind",),
        key_prefixes=("zq",),
        endpoints=("/custom-score",),
        logits=True,
    )


def spoken(url: str = "http://engine.test", **fields: Any) -> Spoken:
    return Spoken("s", ProviderConfig(kind="cohere", base_url=url, **fields), OFFLINE)


def call(**kwargs: Any) -> ProviderCall:
    return ProviderCall(**{"model": "m", "query": "q", "documents": DOCS, **kwargs})


def test_every_request_field_goes_where_the_spec_says() -> None:
    request = spoken().build_request(call(top_n=2, parameters={"seed": 3}))
    assert request.url == "http://engine.test/score" and "authorization" not in request.headers
    assert json.loads(request.body) == {
        "mode": "fast",
        "model": "m",
        "query": {"text": "q"},
        "items": [{"content": "a"}, {"content": "b"}, {"content": "c"}],
        "cut": "END",
        "echo": False,
        "seed": 3,
    }  # no top_n field: the answer is cut instead
    none = json.loads(spoken().build_request(call(truncation=Truncation.NONE)).body)
    assert "cut" not in none  # NONE sends nothing: the engine's default
    assert json.loads(spoken().build_request(call(parameters={"mode": "slow"})).body)["mode"] == "slow"
    for taken in ("echo", "items", "cut", "query", "model"):
        with pytest.raises(errors.InvalidArgument) as caught:
            spoken().build_request(call(parameters={taken: 1}))
        assert caught.value.field_violations[0][0] == "parameters"
    assert (
        spoken(api_key="zq-0123456789abcdef")
        .build_request(call())
        .headers["authorization"]
        .startswith("Bearer ")
    )


def test_pasted_endpoints_are_used_as_given() -> None:
    assert spoken("http://e.test/v9/custom-score").url == "http://e.test/v9/custom-score"
    assert spoken("http://e.test/api/score/").url == "http://e.test/api/score"
    with pytest.raises(errors.ProviderMisconfigured, match="needs base_url"):
        Spoken("s", ProviderConfig(kind="cohere"), OFFLINE)


def test_the_answer_is_read_cut_to_top_n_and_activated() -> None:
    answer = {
        "ranked": [{"i": 2, "s": 3.0}, {"i": 0, "s": -1.0}, {"i": 1, "s": 0.5}],
        "billing": {"units": 4},
    }
    result = spoken().parse_response(call(top_n=2), reply(answer))
    assert [s.index for s in result.scores] == [2, 1]  # the best two, whatever order they came in
    assert result.scores[0].score == pytest.approx(1 / (1 + math.exp(-3.0)))
    assert result.usage.search_units == 4 and result.model == "m"
    every = spoken().parse_response(call(), reply(answer))
    assert [s.index for s in every.scores] == [2, 0, 1]
    with pytest.raises(errors.BadResponse):
        spoken().parse_response(call(), reply({"ranked": [{"i": 7, "s": 1.0}]}))


def test_error_text_and_kind() -> None:
    text = spoken().error_message(HttpReply(400, {}, b'{"problem": "too long", "kind": "Validation"}'))
    assert text == "Validation: too long"
    assert spoken().error_message(HttpReply(500, {}, b"upstream died")) == "upstream died"


def test_key_prefixes_of_a_spec_are_scrubbed_once_it_is_built() -> None:
    leaked = "echoed zq_AbCdEfGhIjKlMnOp in the answer"
    spoken()
    assert "AbCdEfGhIjKlMnOp" not in errors.scrub(leaked)


def test_sigmoid_is_stable_at_the_extremes() -> None:
    assert sigmoid(0.0) == 0.5 and sigmoid(-1000.0) == 0.0 and sigmoid(1000.0) == 1.0
    assert sigmoid(-2.0) == pytest.approx(1 - sigmoid(2.0))
