"""Seed groups against a real Optuna study (in memory), without a Ray runtime."""

from __future__ import annotations

import math

import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from search_spaces import build_sampler, get_space
from study.seeding import SeedGroupSearcher
from study.tuning import DefineByRun

OBJECTIVES = ["id_dice", "ood_specificity"]


def make_searcher(seeds, space="loss_mix"):
    inner = OptunaSearch(
        space=DefineByRun(get_space(space)),
        metric=OBJECTIVES,
        mode=["max", "max"],
        points_to_evaluate=[dict(point) for point in get_space(space).initial_points] or None,
        sampler=build_sampler(get_space(space), None, seed=0),
    )
    return SeedGroupSearcher(inner, OBJECTIVES, seeds, {"epochs": 1}), inner


def optuna_trials(inner):
    return inner._ot_study.get_trials(deepcopy=False)


def test_each_configuration_runs_every_seed():
    searcher, _ = make_searcher([0, 1, 2])

    configs = [searcher.suggest(f"t{index}") for index in range(6)]

    assert [config["seed"] for config in configs] == [0, 1, 2, 0, 1, 2]
    assert len({config["config_id"] for config in configs[:3]}) == 1
    assert configs[0]["config_id"] != configs[3]["config_id"]
    assert configs[0]["ce_weight"] == configs[2]["ce_weight"] == 0.0
    assert configs[3]["ce_weight"] == 1.0
    assert configs[0]["epochs"] == 1


def test_optuna_told_mean_after_last_seed():
    searcher, inner = make_searcher([0, 1])
    searcher.suggest("a")
    searcher.suggest("b")

    searcher.on_trial_complete("a", {"id_dice": 0.8, "ood_specificity": 0.2})
    assert optuna_trials(inner)[0].state == optuna.trial.TrialState.RUNNING

    searcher.on_trial_complete("b", {"id_dice": 0.6, "ood_specificity": 0.4})
    trial = optuna_trials(inner)[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.values == pytest.approx([0.7, 0.3])


def test_one_failed_seed_fails_configuration():
    searcher, inner = make_searcher([0, 1])
    searcher.suggest("a")
    searcher.suggest("b")

    # Ray passes the last result of an errored trial; it must not count as a score.
    searcher.on_trial_complete("a", {"id_dice": 0.8, "ood_specificity": 0.2}, error=True)
    searcher.on_trial_complete("b", {"id_dice": 0.6, "ood_specificity": 0.4})

    trial = optuna_trials(inner)[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.values is None


def test_nan_objective_fails_configuration():
    searcher, inner = make_searcher([0])
    searcher.suggest("a")

    searcher.on_trial_complete("a", {"id_dice": math.nan, "ood_specificity": 0.5})

    assert optuna_trials(inner)[0].state == optuna.trial.TrialState.FAIL


def test_single_seed_error_after_results_is_fail():
    searcher, inner = make_searcher([0])
    searcher.suggest("a")

    searcher.on_trial_complete("a", {"id_dice": 0.9, "ood_specificity": 0.9}, error=True)

    assert optuna_trials(inner)[0].state == optuna.trial.TrialState.FAIL


def test_save_and_restore_keep_groups(tmp_path):
    searcher, _ = make_searcher([0, 1])
    first = searcher.suggest("a")
    searcher.save(str(tmp_path / "searcher.pkl"))

    restored, _ = make_searcher([0, 1])
    restored.restore(str(tmp_path / "searcher.pkl"))
    second = restored.suggest("b")

    assert second["config_id"] == first["config_id"]
    assert second["seed"] == 1


def test_grid_space_covers_grid():
    searcher, _ = make_searcher([0], space="paper")

    settings = [searcher.suggest(f"t{index}")["loss_setting"] for index in range(5)]

    assert sorted(settings) == sorted(["ce", "dice", "combo", "linear", "finetune"])
