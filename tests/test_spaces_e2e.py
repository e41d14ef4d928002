"""Every named space runs end to end on the synthetic data, in one shared Ray runtime."""

from __future__ import annotations

import optuna
import pytest
import ray

from search_spaces import SPACES
from study.run import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_runtime():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("name", sorted(set(SPACES) - {"loss_mix"}))
def test_space_runs_end_to_end(name, tmp_path, ray_runtime):
    folder = tmp_path / name

    # Two configurations, one epoch: the `paper` space runs 2 of its 5 grid settings.
    code = main(["--space", name, "--num-samples", "2", "--epochs", "1", "--image-size", "32", "--storage", str(folder)])

    assert code == 0
    trials = optuna.load_study(study_name="study", storage=f"sqlite:///{folder / 'optuna.db'}").get_trials()
    assert len(trials) == 2
    assert all(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
    assert ray.is_initialized()
