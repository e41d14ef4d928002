"""A study whose driver is killed mid-run, then resumed with --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, run_study_command

pytestmark = pytest.mark.slow


def test_resume_after_driver_killed(tmp_path):
    folder = tmp_path / "killed"
    command = [
        sys.executable, "-m", "study.run", "--space", "loss_mix", "--num-samples", "4", "--epochs", "4",
        "--image-size", "32", "--storage", str(folder), "--name", "killed",
    ]
    # A session of its own, so the kill takes the driver and the Ray processes it started.
    driver = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((folder / "ray" / "killed").glob("trial_*/checkpoint_*")):
            assert driver.poll() is None, "the study ended before any trial checkpointed"
            assert time.monotonic() < deadline, "no trial checkpointed within 300 s"
            time.sleep(1)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)

    result = run_study_command("--resume", "--storage", str(folder))

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = optuna.load_study(study_name="study", storage=f"sqlite:///{folder / 'optuna.db'}").get_trials()
    complete = [trial for trial in trials if trial.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    assert len({trial.params["ce_weight"] for trial in complete}) == 4
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("killed")
    runs = client.search_runs([experiment.experiment_id])
    assert [run.info.run_name for run in runs if run.info.status == "RUNNING"] == []
    children = [run for run in runs if run.data.tags.get("lesion_study.role") == "trial"]
    finished = [run for run in children if run.info.status == "FINISHED"]
    assert len(finished) == 4
    assert len({run.data.tags["config_id"] for run in finished}) == 4
