"""Seed groups and failure handling in real Ray Tune studies (Optuna and MLflow on SQLite)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient

from search_spaces import SPACES, SearchSpace
from study.run import main
from tests.conftest import run_study_command

pytestmark = pytest.mark.slow

SMALL = ["--epochs", "1", "--image-size", "32"]


def child_runs(folder, name):
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [run for run in runs if run.data.tags.get("lesion_study.role") == "trial"]


def optuna_trials(folder):
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{folder / 'optuna.db'}")
    return study.get_trials()


def test_seeds_average_into_optuna(tmp_path):
    folder = tmp_path / "seeds"
    result = run_study_command(
        "--space", "loss_mix", "--seeds", "3", "--num-samples", "4", *SMALL, "--storage", str(folder), "--name", "s3"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    runs = child_runs(folder, "s3")
    assert len(runs) == 12
    groups: dict[str, list] = defaultdict(list)
    for run in runs:
        assert run.info.status == "FINISHED"
        groups[run.data.tags["config_id"]].append(run)
    assert sorted(len(group) for group in groups.values()) == [3, 3, 3, 3]
    for group in groups.values():
        assert sorted(run.data.tags["seed"] for run in group) == ["0", "1", "2"]
        assert len({run.data.params["ce_weight"] for run in group}) == 1

    trials = optuna_trials(folder)
    assert len(trials) == 4
    for trial in trials:
        group = groups[f"c{trial.number:04d}"]
        expected = [sum(run.data.metrics[name] for run in group) / 3 for name in ("id_dice", "ood_specificity")]
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.values == pytest.approx(expected)


# A grid space whose cases fail in two ways: a trial that raises while building its model, and
# a trial whose learning rate makes the loss overflow to NaN.
FAULTS: dict[str, dict[str, Any]] = {
    "ok": {},
    "raise": {"encoder": "tu-no_such_network"},
    "nan": {"lr": 1e30},
    "ok2": {"ce_weight": 1.0},
}


def faulty_sample(trial: optuna.Trial) -> dict[str, Any]:
    case = trial.suggest_categorical("loss_setting", list(FAULTS))
    return dict(FAULTS[case])


FAULTY = SearchSpace(
    name="faulty",
    description="test space with failing cases",
    sample=faulty_sample,
    sampler="grid",
    grid={"loss_setting": list(FAULTS)},
)


def test_failed_and_diverged_trials_recorded_as_failed(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(SPACES, "faulty", FAULTY)
    folder = tmp_path / "faulty"

    code = main(["--space", "faulty", *SMALL, "--storage", str(folder), "--name", "faulty"])

    assert code == 0
    states = {trial.params["loss_setting"]: trial for trial in optuna_trials(folder)}
    assert sorted(states) == sorted(FAULTS)
    for case in ("raise", "nan"):
        assert states[case].state == optuna.trial.TrialState.FAIL
        assert states[case].values is None
    for case in ("ok", "ok2"):
        assert states[case].state == optuna.trial.TrialState.COMPLETE

    runs = {run.data.params["loss_setting"]: run for run in child_runs(folder, "faulty")}
    assert runs["raise"].info.status == "FAILED"
    assert "tu-no_such_network" in runs["raise"].data.tags["failure_reason"]
    assert runs["nan"].info.status == "FAILED"
    assert "TrialDiverged" in runs["nan"].data.tags["failure_reason"]
    assert runs["ok"].info.status == "FINISHED"
    assert runs["ok2"].info.status == "FINISHED"
    assert "FAILED" in capsys.readouterr().out
