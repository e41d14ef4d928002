"""Pareto front and hypervolume on fronts small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.pareto import hypervolume, pareto_mask


def test_front_simple():
    points = [[0.9, 0.1], [0.5, 0.5], [0.1, 0.9], [0.4, 0.4]]

    assert pareto_mask(points).tolist() == [True, True, True, False]


def test_exact_duplicates_both_kept():
    points = [[0.5, 0.5], [0.5, 0.5], [0.2, 0.2]]

    assert pareto_mask(points).tolist() == [True, True, False]


def test_equal_on_one_worse_on_other_is_dominated():
    points = [[0.5, 0.5], [0.5, 0.4], [0.4, 0.5]]

    assert pareto_mask(points).tolist() == [True, False, False]


def test_nan_rows_never_on_front():
    points = [[math.nan, 1.0], [0.3, 0.3], [1.0, math.nan]]

    assert pareto_mask(points).tolist() == [False, True, False]


def test_all_nan_and_empty():
    assert pareto_mask([[math.nan, math.nan]]).tolist() == [False]
    assert pareto_mask(np.empty((0, 2))).tolist() == []


def test_single_point_and_all_equal():
    assert pareto_mask([[0.1, 0.2]]).tolist() == [True]
    assert pareto_mask([[0.3, 0.3]] * 3).tolist() == [True, True, True]


def test_wrong_number_of_objectives():
    with pytest.raises(ValueError, match=r"shape \(n, 2\).*\(2, 3\)"):
        pareto_mask([[1, 2, 3], [4, 5, 6]])


def test_hypervolume_by_hand():
    # Rectangles from (0, 0): 1.0 x 0.2, then the step 0.5 x (0.6 - 0.2).
    assert hypervolume([[1.0, 0.2], [0.5, 0.6]]) == pytest.approx(0.2 + 0.5 * 0.4)


def test_hypervolume_ignores_dominated_duplicates_and_nan():
    points = [[1.0, 0.2], [0.5, 0.6], [0.5, 0.6], [0.4, 0.1], [math.nan, 0.9]]

    assert hypervolume(points) == pytest.approx(0.4)


def test_hypervolume_reference_point():
    assert hypervolume([[0.5, 0.5]], reference=(0.25, 0.0)) == pytest.approx(0.125)
    assert hypervolume([[0.5, 0.5]], reference=(0.5, 0.0)) == 0.0


def test_front_matches_brute_force():
    rng = np.random.default_rng(0)
    points = rng.integers(0, 6, size=(200, 2)).astype(float)

    expected = [
        not any((other >= point).all() and (other > point).any() for other in points) for point in points
    ]
    assert pareto_mask(points).tolist() == expected
