"""Search-space registry and samplers, with a real in-memory Optuna study."""

from __future__ import annotations

import optuna
import pytest

from search_spaces import SAMPLERS, SPACES, build_sampler, get_space
from study.config import TrialConfig


def sample_once(space, sampler=None):
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=build_sampler(space, sampler, seed=0))
    for point in space.initial_points:
        study.enqueue_trial(dict(point))
    trial = study.ask()
    derived = space.sample(trial)
    return {**trial.params, **derived}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_space_samples_valid_trial_settings(name):
    space = get_space(name)

    settings = sample_once(space)

    TrialConfig.from_mapping({**space.fixed, **settings})
    assert space.description


@pytest.mark.parametrize("name", sorted(SPACES))
def test_random_sampler_runs_every_space(name):
    space = get_space(name)

    settings = sample_once(space, sampler="random")

    TrialConfig.from_mapping({**space.fixed, **settings})


def test_unknown_space_lists_valid():
    with pytest.raises(ValueError, match="unknown search space 'nosuch'; valid spaces are: loss_mix"):
        get_space("nosuch")


def test_grid_sampler_needs_grid():
    with pytest.raises(ValueError, match="--sampler grid needs a space with a grid"):
        build_sampler(get_space("loss_mix"), "grid", seed=0)


def test_every_sampler_name_builds():
    for name in SAMPLERS:
        space = get_space("paper") if name == "grid" else get_space("loss_mix")
        assert isinstance(build_sampler(space, name, seed=0), optuna.samplers.BaseSampler)


def test_paper_grid_size():
    assert get_space("paper").grid_size == 5


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random", "grid"])
def test_sampler_survives_pickling(name):
    import pickle

    space = get_space("paper") if name == "grid" else get_space("loss_mix")
    sampler = pickle.loads(pickle.dumps(build_sampler(space, name, seed=0)))

    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    trial = study.ask()
    space.sample(trial)
    study.tell(trial, [0.5, 0.5])
