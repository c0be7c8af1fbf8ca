"""jsonwire.scores: a well-formed answer maps as given; every malformed one is BadResponse, whichever
of its two paths (the column-at-a-time one and the per-item one) meets it."""

from __future__ import annotations

from typing import Any

import pytest
from rerankd import errors
from rerankd.domain import Scored
from rerankd.providers.jsonwire import scores


def test_a_well_formed_answer_maps_in_the_providers_order() -> None:
    items = [
        {"index": 2, "relevance_score": 0.9},
        {"index": 0, "relevance_score": 1},  # an integer score is a number too
        {"index": 1, "relevance_score": 0.25, "document": {"text": "extra keys are ignored"}},
    ]
    assert scores("p", items, 3) == [Scored(2, 0.9), Scored(0, 1.0), Scored(1, 0.25)]
    assert all(type(s.score) is float for s in scores("p", items, 3))
    assert scores("p", [], 3) == []
    assert scores("p", [{"index": 0, "score": 0.5}], 1, score_key="score") == [Scored(0, 0.5)]


@pytest.mark.parametrize(
    "items",
    [
        None,
        {"index": 0, "relevance_score": 0.5},
        [["index", 0]],
        [{"relevance_score": 0.5}],
        [{"index": 0}],
        [{"index": True, "relevance_score": 0.5}],
        [{"index": 0.0, "relevance_score": 0.5}],
        [{"index": "0", "relevance_score": 0.5}],
        [{"index": 0, "relevance_score": "0.5"}],
        [{"index": 0, "relevance_score": False}],
        [{"index": 0, "relevance_score": None}],
        [{"index": -1, "relevance_score": 0.5}],
        [{"index": 3, "relevance_score": 0.5}],
        [{"index": 10**30, "relevance_score": 0.5}],
        [{"index": 0, "relevance_score": float("nan")}],
        [{"index": 0, "relevance_score": float("inf")}],
        [{"index": 0, "relevance_score": 10**400}],
        [{"index": 0, "relevance_score": 0.5}, {"index": 0, "relevance_score": 0.4}],
        [{"index": 0, "relevance_score": 0.5}, "junk"],
    ],
)
def test_a_malformed_answer_is_bad_response_naming_the_provider(items: Any) -> None:
    with pytest.raises(errors.BadResponse) as caught:
        scores("acme", items, 3)
    assert caught.value.provider == "acme" and caught.value.message.startswith("acme: answer ")
