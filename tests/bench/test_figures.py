"""How the benchmarks turn alternated runs into figures (`bench/_common.py`); timing nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _common


def test_a_figure_is_the_median_of_the_pairs_ratios_not_the_ratio_of_the_medians():
    # Pair ratios 2.0, 1.0 and 4.0 have the median 2.0; the sides' medians would give 30 / 10.
    result = _common.figure("rate", "/s", ours=[20, 30, 40], bare=[10, 30, 10], at_least=2.5)
    assert result["pair_ratios"] == [2.0, 1.0, 4.0]
    assert result["ratio"] == 2.0
    assert (result["ours"], result["bare"]) == (30, 10)
    assert (result["target"], result["met"], result["pairs"]) == (">= 2.5x", False, 3)


def test_an_upper_target_is_met_at_or_below_it():
    result = _common.figure("p99", "ms", ours=[3, 3, 3], bare=[1, 1, 1], at_most=3)
    assert (result["target"], result["met"]) == ("<= 3x", True)


def test_fewer_than_three_pairs_or_unequal_sides_make_no_figure():
    with pytest.raises(ValueError):
        _common.figure("rate", "/s", ours=[1, 2], bare=[1, 2])
    with pytest.raises(ValueError):
        _common.figure("rate", "/s", ours=[1, 2, 3], bare=[1, 2])


def test_alternated_runs_are_split_into_consecutive_blocks_in_order():
    assert _common.split_into_pairs(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    ours, bare = _common.latency_pairs([1, 2, 3, 10, 20, 30], [1, 1, 1, 5, 5, 5], 2, _common.p50)
    assert (ours, bare) == ([2, 20], [1, 5])
