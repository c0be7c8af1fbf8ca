"""rerankd.passages: the windows' spans over token offsets and the pooling, on plain numbers."""

from __future__ import annotations

import pytest
from rerankd import errors
from rerankd.domain import Passage
from rerankd.passages import Passages, pool, requested, spans

# Ten tokens of three characters and a space each: token i covers [4i, 4i + 3).
OFFSETS = [(4 * i, 4 * i + 3) for i in range(10)]


def test_windows_start_every_tokens_minus_stride_and_the_last_ends_with_the_text() -> None:
    assert spans(OFFSETS, Passages(tokens=8, stride=4)) == [(0, 31), (16, 39)]
    assert spans(OFFSETS, Passages(tokens=8, stride=2)) == [(0, 31), (24, 39)]
    assert spans(OFFSETS, Passages(tokens=16, stride=4)) == [(0, 39)]  # it fits in one


def test_limit_first_and_cut_bound_the_windows() -> None:
    assert spans(OFFSETS, Passages(tokens=8, stride=4, limit=1)) == [(0, 31)]
    assert spans(OFFSETS, Passages(tokens=8, stride=4, pool="first")) == [(0, 31)]
    assert spans(OFFSETS, Passages(tokens=8, stride=4), cut=9) == [(0, 31), (16, 35)]
    assert spans([], Passages()) == [(0, 0)]
    assert Passages(tokens=256, stride=64).most_tokens() == 256 + 63 * 192
    assert Passages(tokens=256, stride=64, pool="first").most_tokens() == 256


class _W:
    def __init__(self, document: int, start: int, end: int) -> None:
        self.document, self.start, self.end = document, start, end


def test_pooling_names_the_best_window_whatever_pools() -> None:
    windows = [_W(0, 0, 10), _W(0, 5, 15), _W(0, 10, 20), _W(1, 0, 4)]
    scores = [0.2, 0.9, 0.4, 0.3]
    best, short = pool(windows, scores, 2, "max")
    assert (best.index, best.score, best.passage) == (0, 0.9, Passage(5, 15, 1, 3))
    assert (short.score, short.passage) == (0.3, Passage(0, 4, 0, 1))
    (mean, _) = pool(windows, scores, 2, "mean")
    assert mean.score == pytest.approx(0.5) and mean.passage == Passage(5, 15, 1, 3)


def test_a_requests_setting_wins_and_a_malformed_one_names_the_field() -> None:
    default = Passages()
    assert requested({}, default) is default
    assert requested({"passages": False}, default) is None
    assert requested({"passages": {"tokens": 64, "stride": 16}}, None) == Passages(tokens=64, stride=16)
    with pytest.raises(errors.InvalidArgument) as caught:
        requested({"passages": {"tokens": 64, "stride": 40}}, None)
    assert caught.value.field_violations[0][0] == "parameters.passages"
