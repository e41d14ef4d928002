"""A real Ray Tune study on the synthetic data, recorded in a real SQLite MLflow store."""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_study_command

pytestmark = pytest.mark.slow


def mlflow_runs(folder, name):
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [run for run in runs if run.data.tags.get("lesion_study.role") == "study"]
    children = [run for run in runs if run.data.tags.get("lesion_study.role") == "trial"]
    return client, parents, children


def test_loss_mix_study_end_to_end(tmp_path):
    folder = tmp_path / "study"
    result = run_study_command(
        "--space", "loss_mix", "--num-samples", "4", "--epochs", "2", "--image-size", "32",
        "--storage", str(folder), "--name", "t1",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # Optuna: four configurations, all complete, the enqueued points first.
    optuna_study = optuna.load_study(study_name="study", storage=f"sqlite:///{folder / 'optuna.db'}")
    trials = optuna_study.get_trials()
    assert len(trials) == 4
    assert all(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
    assert [trial.params["ce_weight"] for trial in trials[:3]] == [0.0, 1.0, 0.5]

    # MLflow: one parent run and four finished child runs with per-epoch and final metrics.
    client, parents, children = mlflow_runs(folder, "t1")
    assert len(parents) == 1
    assert len(children) == 4
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert "ce_weight" in run.data.params
        for name in ("id_dice", "ood_specificity"):
            history = client.get_metric_history(run.info.run_id, name)
            assert [point.step for point in history] == [1, 2]
            assert run.data.metrics[name] == history[-1].value
        assert "test_id_dice" in run.data.metrics
    assert parents[0].info.status == "FINISHED"
    artifacts = [item.path for item in client.list_artifacts(parents[0].info.run_id)]
    assert "study.yaml" in artifacts

    # Optuna's values are the trials' final validation objectives.
    by_config = {run.data.tags["config_id"]: run for run in children}
    for trial in trials:
        run = by_config[f"c{trial.number:04d}"]
        assert trial.values == pytest.approx([run.data.metrics["id_dice"], run.data.metrics["ood_specificity"]])

    # The end-of-run summary names the front and where the records are.
    assert "Pareto front" in result.stdout
    assert "mlflow ui --backend-store-uri" in result.stdout
    assert (folder / "study.yaml").exists()
