"""The study report and re-evaluation, on MLflow stores written by the study's own tracker."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from analysis.records import RecordsError, read_study
from analysis.reevaluate import CheckpointError, reevaluate
from analysis.report import FILES, write_report
from study.config import TrialConfig
from study.tracking import StudyTracker
from tests.conftest import REPO, run_study_command

CI_COLUMNS = ("id_dice_mean", "id_dice_std", "id_dice_ci_low", "id_dice_ci_high", "ood_specificity_ci_low", "n", "n_failed")


def make_store(folder, trials, name="t"):
    """Write study.yaml and an MLflow store holding ``trials``: (config_id, seed, ce_weight, metrics or None)."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    (folder / "study.yaml").write_text(yaml.safe_dump({"name": name, "tracking_uri": uri, "image_size": 16, "data": "synthetic"}))
    tracker = StudyTracker(uri, name, artifact_root=folder / "mlartifacts")
    tracker.start_study({"space": "loss_mix"})
    for config_id, seed, ce_weight, metrics in trials:
        config = TrialConfig(seed=seed, ce_weight=ce_weight, config_id=config_id)
        family = {0.0: "dice", 1.0: "ce"}.get(ce_weight, "mixture")
        tags = {"loss_family": family, "seed": seed, "config_id": config_id, "loss_setting": "",
                "architecture": config.architecture, "encoder": config.encoder,
                "checkpoint_path": str(folder / "missing" / f"{config_id}-{seed}")}
        run_id = tracker.start_trial(f"{config_id}-seed{seed}", config.to_dict(), tags)
        tracker.log_dict(run_id, config.to_dict(), "trial_config.json")
        if metrics:
            tracker.log_metrics(run_id, metrics, step=1)
        tracker.end_trial(run_id, failed=metrics is None, reason=None if metrics else "RuntimeError: boom")
    tracker.end_study()
    return folder


def artifacts(folder, name="t"):
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    parent = client.search_runs([experiment.experiment_id], filter_string="tags.`lesion_study.role` = 'study'")[0]
    return {item.path for item in client.list_artifacts(parent.info.run_id, "report")}


def test_records_are_typed_and_metrics_kept(tmp_path):
    folder = make_store(tmp_path / "s", [("c0000", 0, 0.25, {"id_dice": 0.5, "ood_specificity": 0.75, "ce_weight": 0.25, "test_id_dice": 0.4})])

    runs = read_study(storage=folder).runs

    row = runs.iloc[0]
    assert (row["config_id"], row["seed"], row["loss_family"], row["status"]) == ("c0000", 0, "mixture", "FINISHED")
    assert (row["ce_weight"], row["epochs"], bool(row["log_dice"])) == (0.25, 4, False)
    assert (row["id_dice"], row["test_id_dice"], row["metric_ce_weight"]) == (0.5, 0.4, 0.25)


def test_unknown_experiment_names_the_uri(tmp_path):
    folder = make_store(tmp_path / "s", [])

    with pytest.raises(RecordsError, match=r"no MLflow experiment named 'other' in sqlite:///.*mlflow.db"):
        read_study(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", experiment="other")
    with pytest.raises(RecordsError, match=r"has no study.yaml"):
        read_study(storage=tmp_path / "nothing")


@pytest.mark.parametrize(
    "trials",
    [
        pytest.param([], id="no-runs"),
        pytest.param([("c0000", 0, 1.0, None), ("c0000", 1, 1.0, None)], id="all-failed"),
        pytest.param([("c0000", 0, 0.5, {"id_dice": 0.6, "ood_specificity": 0.5})], id="one-configuration"),
    ],
)
def test_report_on_degenerate_studies(tmp_path, trials):
    folder = make_store(tmp_path / "s", trials)

    report = write_report(storage=folder)

    assert report == folder / "report"
    assert all((report / name).is_file() for name in FILES)
    assert artifacts(folder) == {f"report/{name}" for name in FILES}
    configurations = pd.read_csv(report / "configurations.csv")
    if trials and trials[0][3] is None:
        assert configurations[["n", "n_failed"]].values.tolist() == [[0, 2]]
        assert not configurations["front"].any()
    if trials and trials[0][3]:
        assert configurations["front"].tolist() == [True]
        assert configurations["p_front"].tolist() == [1.0]


def test_report_without_mlflow_logging_and_custom_output(tmp_path):
    folder = make_store(tmp_path / "s", [("c0000", 0, 0.5, {"id_dice": 0.6, "ood_specificity": 0.5})])

    report = write_report(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", experiment="t", output=tmp_path / "out", log_to_mlflow=False)

    assert report == tmp_path / "out"
    assert (report / "report.md").is_file()
    assert artifacts(folder) == set()


def test_reevaluate_names_the_missing_checkpoint(tmp_path):
    folder = make_store(tmp_path / "s", [("c0000", 0, 0.5, {"id_dice": 0.6, "ood_specificity": 0.5})])

    with pytest.raises(CheckpointError, match=r"run \w+ \(c0000-seed0\) has no checkpoint at .*missing/c0000-0/checkpoint.pt"):
        reevaluate(storage=folder, data="synthetic", configs=["c0000"])
    with pytest.raises(RecordsError, match=r"unknown configurations \['c9'\]"):
        reevaluate(storage=folder, data="synthetic", configs=["c9"])


@pytest.mark.slow
def test_report_and_reevaluation_of_a_real_study(tmp_path):
    folder = tmp_path / "study"
    result = run_study_command(
        "--space", "loss_mix", "--num-samples", "2", "--seeds", "3", "--epochs", "1", "--image-size", "32",
        "--storage", str(folder), "--name", "rep",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # The report: figures, tables with seed intervals, comparisons, all logged to the parent run.
    report = write_report(storage=folder)
    assert all((report / name).is_file() and (report / name).stat().st_size > 0 for name in FILES)
    # Self-contained: plotly.js (several MB) is embedded, so the page opens offline.
    assert (report / "pareto.html").stat().st_size > 1_000_000
    configurations = pd.read_csv(report / "configurations.csv")
    assert set(CI_COLUMNS) <= set(configurations.columns)
    assert configurations["n"].tolist() == [3, 3]
    assert {"test_id_dice_mean", "test_reference_dice_mean", "test_reference_empty_fraction_mean", "front", "p_front"} <= set(configurations)
    comparisons = pd.read_csv(report / "comparisons.csv")
    assert len(comparisons) == 2
    assert comparisons["n_pairs"].tolist() == [3, 3]
    assert comparisons["test"].str.startswith("sign-flip").all()
    assert len(pd.read_csv(report / "runs.csv")) == 6
    assert artifacts(folder, "rep") == {f"report/{name}" for name in FILES}

    # Re-evaluation of the front on the same synthetic data reproduces the study's test figures.
    done = subprocess.run(
        [sys.executable, "-m", "analysis", "reevaluate", "--storage", str(folder), "--data", "synthetic", "--front"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    again = folder / "reevaluation"
    runs = pd.read_csv(again / "reevaluation_runs.csv")
    summary = pd.read_csv(again / "reevaluation_configurations.csv")
    front = set(configurations.loc[configurations["front"], "config_id"])
    assert set(runs["config_id"]) == front
    assert set(summary["config_id"]) == front
    assert {"test_id_dice_mean", "test_id_dice_ci_low", "n"} <= set(summary)
    recorded = configurations.set_index("config_id").loc[sorted(front), "test_id_dice_mean"].tolist()
    assert summary.set_index("config_id").loc[sorted(front), "test_id_dice_mean"].tolist() == pytest.approx(recorded, abs=1e-6)
    assert not math.isnan(summary["test_ood_specificity_mean"].iloc[0])
    assert (again / "reevaluation.md").is_file()


def test_analysis_never_imports_ray():
    code = (
        "import sys, analysis.__main__, analysis.report, analysis.reevaluate, analysis.stats, analysis.plots\n"
        "print(sorted(name for name in sys.modules if name == 'ray' or name.startswith('ray.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
