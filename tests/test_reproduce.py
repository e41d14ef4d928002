"""The reproduction experiment end to end, shrunk: 1 epoch, 2 seeds, 2 loss_mix configurations.

Kvasir-SEG runs at 32 px; FUSeg stays at 128 px because some of its ulcers cover too few pixels to
survive a smaller resize, which the data check rejects.

The same commands as the full run (experiments.reproduce, then experiments.results) on both real
datasets, so the script, its configs and the results page cannot drift from the study runner.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import DATA_VARIABLE, REPO

# The four studies run once, for the first test that uses them: 8 minutes on 2 idle cores.
pytestmark = [pytest.mark.slow, pytest.mark.realdata, pytest.mark.timeout(1800)]

STUDIES = ("kvasir_seg_paper", "fuseg_paper", "kvasir_seg_loss_mix", "fuseg_loss_mix")
SETTINGS = ("CE", "Dice", "0.5 CE + 0.5 Dice", "linear CE -> Dice", "fine-tune CE -> Dice")


def reproduce(out, page, data_root):
    command = [
        sys.executable, "-m", "experiments.reproduce", "--out", str(out), "--results", str(page),
        "--image-size", "kvasir_seg=32", "fuseg=128", "--epochs", "1", "--seeds", "2", "--mix-samples", "2",
    ]
    env = {**os.environ, DATA_VARIABLE: str(data_root)}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory):
    value = os.environ.get(DATA_VARIABLE)
    if not value:
        pytest.skip(f"{DATA_VARIABLE} is not set; point it at the folder holding kvasir_seg/, fuseg_train/, ...")
    folder = tmp_path_factory.mktemp("reproduce")
    out, page = folder / "studies", folder / "docs" / "results.md"
    result = reproduce(out, page, value)
    return out, page, result, value


def test_reduced_reproduction_runs_all_four_studies(reduced_run):
    out, _, result, _ = reduced_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    timings = json.loads((out / "timings.json").read_text())
    assert sorted(timings["studies"]) == sorted(STUDIES)
    assert all(entry["exit"] == 0 and entry["wall_s"] > 0 for entry in timings["studies"].values())


@pytest.mark.parametrize("name, trials", [("kvasir_seg_paper", 10), ("fuseg_paper", 10), ("kvasir_seg_loss_mix", 4), ("fuseg_loss_mix", 4)])
def test_trials_in_mlflow_and_optuna(reduced_run, name, trials):
    out = reduced_run[0]
    client = MlflowClient(tracking_uri=f"sqlite:///{out / name / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment {name}"
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`lesion_study.role` = 'trial'")
    assert sorted(run.info.status for run in runs) == ["FINISHED"] * trials
    with sqlite3.connect(out / name / "optuna.db") as connection:
        states = [row[0] for row in connection.execute("SELECT state FROM trials")]
    assert states == ["COMPLETE"] * (trials // 2)  # one Optuna trial per configuration, 2 seeds each
    assert (out / name / "report" / "report.md").is_file()


def test_results_page_covers_both_datasets(reduced_run):
    _, page, _, _ = reduced_run
    text = page.read_text()
    for title in ("## Kvasir-SEG", "## FUSeg"):
        assert title in text
    lines = text.splitlines()
    for setting in SETTINGS:
        # One row per setting in each dataset's validation and test tables, with 2 seeds counted.
        assert sum(line.startswith(f"| {setting} | 2 |") for line in lines) == 4, setting
    assert text.count("### Which parts of the pattern reproduce") == 2
    assert text.count("CE more specific on lesion-free images than Dice: **") == 4
    assert "### Side by side with the reference" in text
    assert (page.parent / "results" / "kvasir_seg_pareto.png").stat().st_size > 0
    assert (page.parent / "results" / "fuseg_pareto.png").stat().st_size > 0


def test_rerun_skips_finished_studies(reduced_run):
    out, page, _, data_root = reduced_run
    before = json.loads((out / "timings.json").read_text())
    result = reproduce(out, page, data_root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished before, skipped") == 4
    assert json.loads((out / "timings.json").read_text())["studies"] == before["studies"]
