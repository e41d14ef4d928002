"""Seed statistics of the analysis package on tables small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import stats
from analysis.stats import (
    AnalysisError,
    add_front,
    aggregate_configurations,
    compare_families,
    convergence,
    front_probability,
    holm,
    hypervolume_table,
    paired_test,
    rank_biserial,
    sign_flip_test,
    t_interval,
)


def run_table(rows):
    """rows: (config_id, loss_family, seed, id_dice, ood_specificity[, status])."""
    records = []
    for number, row in enumerate(rows):
        config_id, family, seed, dice, specificity, *status = row
        records.append({
            "run_id": f"r{number}", "config_id": config_id, "loss_family": family, "seed": seed,
            "id_dice": dice, "ood_specificity": specificity, "status": status[0] if status else "FINISHED",
            "end_time": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=number),
        })
    return pd.DataFrame(records)


# Three configurations whose seeds agree exactly: means (0.8, 0.2), (0.4, 0.6), (0.6, 0.5).
THREE = run_table([
    ("c0", "ce", 0, 0.8, 0.2), ("c0", "ce", 1, 0.8, 0.2),
    ("c1", "dice", 0, 0.4, 0.6), ("c1", "dice", 1, 0.4, 0.6),
    ("c2", "mixture", 0, 0.6, 0.5), ("c2", "mixture", 1, 0.6, 0.5),
])


def test_objectives_match_the_study():
    from study.train import OBJECTIVES

    assert stats.OBJECTIVES == OBJECTIVES


def test_t_interval_of_one_two_three():
    mean, std, n, low, high = t_interval([1.0, 2.0, 3.0])

    # t(0.975, 2) = 4.302653; half width 4.302653 / sqrt(3) = 2.484138.
    assert (mean, std, n) == (2.0, 1.0, 3)
    assert low == pytest.approx(-0.484138, abs=1e-6)
    assert high == pytest.approx(4.484138, abs=1e-6)


def test_t_interval_skips_nan_and_needs_two_values():
    assert t_interval([1.0, math.nan, 3.0])[:3] == (2.0, pytest.approx(math.sqrt(2)), 2)
    mean, std, n, low, high = t_interval([0.7])
    assert (mean, n) == (0.7, 1)
    assert math.isnan(std)
    assert math.isnan(low)
    assert math.isnan(high)
    assert t_interval([])[2] == 0
    assert math.isnan(t_interval([math.nan])[0])


def test_failed_runs_are_excluded_and_counted():
    runs = run_table([
        ("c0", "ce", 0, 0.5, 0.5),
        ("c0", "ce", 1, math.nan, math.nan, "FAILED"),
        ("c0", "ce", 2, 0.9, math.nan),  # finished, but one objective is missing
        ("c0", "ce", 3, 0.7, 0.9),
    ])

    row = aggregate_configurations(runs).iloc[0]

    assert (row["n"], row["n_failed"], row["n_incomplete"], row["seeds"]) == (2, 1, 1, "0,3")
    assert row["id_dice_mean"] == pytest.approx(0.6)
    assert row["ood_specificity_mean"] == pytest.approx(0.7)


def test_all_failed_configuration_is_never_on_the_front():
    runs = run_table([("c0", "ce", 0, math.nan, math.nan, "FAILED"), ("c1", "dice", 0, 0.1, 0.1)])

    table = add_front(aggregate_configurations(runs), runs)

    assert table["front"].tolist() == [False, True]
    assert math.isnan(table["p_front"].iloc[0])
    assert table["p_front"].iloc[1] == 1.0


def test_front_probability_dominated_and_sole():
    runs = run_table([
        ("a", "ce", 0, 0.9, 0.9), ("a", "ce", 1, 0.8, 0.8),
        ("b", "dice", 0, 0.1, 0.1), ("b", "dice", 1, 0.2, 0.2),
    ])

    assert front_probability(runs, ["a", "b"]).tolist() == [1.0, 0.0]
    assert front_probability(runs[runs["config_id"] == "b"], ["b"]).tolist() == [1.0]


def test_front_probability_reproducible_and_bounded():
    # Two configurations whose seeds cross: each is on the front in some resamplings.
    runs = run_table([
        ("a", "ce", 0, 0.9, 0.1), ("a", "ce", 1, 0.1, 0.9),
        ("b", "dice", 0, 0.5, 0.5), ("b", "dice", 1, 0.4, 0.4),
    ])

    first = front_probability(runs, ["a", "b"], replicates=200, seed=3)

    assert np.array_equal(first, front_probability(runs, ["a", "b"], replicates=200, seed=3))
    assert 0.0 < first[1] < 1.0


def test_hypervolume_overall_and_per_family_by_hand():
    configurations = aggregate_configurations(THREE)

    table = hypervolume_table(configurations, THREE).set_index("group")

    # all: 0.2 x 0.2 + 0.2 x 0.5 + 0.4 x 0.6 = 0.38; each family alone is one rectangle.
    assert table.loc["all", "hypervolume"] == pytest.approx(0.38)
    assert table.loc["ce", "hypervolume"] == pytest.approx(0.16)
    assert table.loc["dice", "hypervolume"] == pytest.approx(0.24)
    assert table.loc["mixture", "hypervolume"] == pytest.approx(0.30)
    # Identical seeds leave nothing to resample: the interval is the point.
    assert table.loc["all", "ci_low"] == pytest.approx(0.38)
    assert table.loc["all", "ci_high"] == pytest.approx(0.38)
    assert (table["reference_id_dice"] == 0.0).all()
    assert (table["reference_ood_specificity"] == 0.0).all()


def test_hypervolume_reference_point_is_used_and_recorded():
    configurations = aggregate_configurations(THREE)

    table = hypervolume_table(configurations, THREE, reference=(0.5, 0.0)).set_index("group")

    # Only (0.8, 0.2) and (0.6, 0.5) pass x > 0.5: 0.2 x 0.2 + 0.1 x 0.5 = 0.09.
    assert table.loc["all", "hypervolume"] == pytest.approx(0.09)
    assert table.loc["dice", "hypervolume"] == 0.0
    assert table.loc["all", "reference_id_dice"] == 0.5


def test_convergence_follows_completion_order():
    curve = convergence(aggregate_configurations(THREE))

    assert curve["config_id"].tolist() == ["c0", "c1", "c2"]
    assert curve["hypervolume"].tolist() == pytest.approx([0.16, 0.16 + 0.4 * 0.4, 0.38])


def test_holm_on_three_p_values_by_hand():
    # Sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04).
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]).tolist() == pytest.approx([1.0, 1.0])
    adjusted = holm([0.02, math.nan, 0.04])
    assert adjusted[[0, 2]].tolist() == pytest.approx([0.04, 0.04])
    assert math.isnan(adjusted[1])


def test_sign_flip_test_exact_p():
    # Sums of (+-1, +-2, +-3): |sum| >= 6 only for +++ and ---, so p = 2 / 8.
    assert sign_flip_test([1.0, 2.0, 3.0]) == 0.25
    # (0.1, 0.2, -0.05): |sum| >= 0.25 for 4 of the 8 sign vectors.
    assert sign_flip_test([0.1, 0.2, -0.05]) == 0.5
    assert sign_flip_test([1.0, -1.0]) == 1.0
    assert math.isnan(sign_flip_test([]))


def test_rank_biserial_by_hand():
    # |d| ranks 2, 3, 1; R+ = 5, R- = 1 -> (5 - 1) / 6.
    assert rank_biserial([0.1, 0.2, -0.05]) == pytest.approx(4 / 6)
    assert rank_biserial([-1.0, -2.0]) == -1.0
    assert rank_biserial([0.0, 0.0]) == 0.0


def test_paired_test_switches_to_wilcoxon_at_six_pairs():
    name, _, p = paired_test([1.0, 2.0, 3.0, 4.0, 5.0])
    assert name.startswith("sign-flip")
    assert p == pytest.approx(2 / 32)

    # Six positive distinct differences: the exact Wilcoxon p is 2 / 2**6.
    name, statistic, p = paired_test([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert name == "wilcoxon signed-rank"
    assert p == pytest.approx(0.03125)


def test_compare_families_pairs_by_seed():
    runs = run_table([
        ("a", "ce", 0, 0.6, 0.5), ("a", "ce", 1, 0.7, 0.5), ("a", "ce", 2, 0.5, 0.5), ("a", "ce", 3, 0.9, 0.9),
        ("b", "dice", 0, 0.5, 0.5), ("b", "dice", 1, 0.5, 0.5), ("b", "dice", 2, 0.55, 0.5),
        ("c", "ce", 0, 0.1, 0.1),  # same family as a: not compared with a
    ])

    table = compare_families(runs)

    assert sorted(zip(table["config_a"], table["config_b"])) == [("a", "b"), ("a", "b"), ("b", "c"), ("b", "c")]
    row = table[(table["config_a"] == "a") & (table["objective"] == "id_dice")].iloc[0]
    # Seed 3 has no partner; the differences are 0.1, 0.2, -0.05.
    assert (row["n_pairs"], row["seeds"]) == (3, "0,1,2")
    assert row["mean_difference"] == pytest.approx(0.25 / 3)
    assert row["p_value"] == 0.5
    assert row["rank_biserial"] == pytest.approx(4 / 6)
    assert row["p_holm"] == pytest.approx(min(1.0, 0.5 * 4))
    assert not row["significant"]


def test_wrong_number_of_objectives_is_a_clear_error():
    with pytest.raises(AnalysisError, match=r"expected exactly 2 objectives.*got 1"):
        aggregate_configurations(THREE, objectives=("id_dice",))
    with pytest.raises(AnalysisError, match=r"not columns of the run table"):
        aggregate_configurations(THREE, objectives=("id_dice", "missing_metric"))
    with pytest.raises(AnalysisError, match="reference point must be two numbers"):
        hypervolume_table(aggregate_configurations(THREE), THREE, reference=(0.0, 0.0, 0.0))


def test_empty_tables_give_empty_results():
    empty = run_table([]).reindex(columns=["config_id", "loss_family", "seed", "id_dice", "ood_specificity", "status"])

    configurations = add_front(aggregate_configurations(empty), empty)

    assert configurations.empty
    assert "front" in configurations
    assert "id_dice_mean" in configurations
    assert hypervolume_table(configurations, empty).empty
    assert compare_families(empty).empty
    assert convergence(configurations).empty
