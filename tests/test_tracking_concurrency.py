"""Many concurrent trials against one SQLite store, and a real MLflow tracking server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_study_command

pytestmark = pytest.mark.slow

TINY = ["--space", "loss_mix", "--epochs", "1", "--image-size", "32"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def finished_trial_runs(tracking_uri, name):
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`lesion_study.role` = 'trial'")
    return [run for run in runs if run.info.status == "FINISHED"], runs


def max_overlapping_runs(runs) -> int:
    """Return the largest number of runs whose [start, end] intervals overlap."""
    events = sorted([(run.info.start_time, 1) for run in runs] + [(run.info.end_time, -1) for run in runs])
    current = best = 0
    for _, change in events:
        current += change
        best = max(best, current)
    return best


def test_eight_concurrent_trials_no_lock_errors(tmp_path):
    folder = tmp_path / "eight"
    result = run_study_command(
        "--space", "loss_mix", "--epochs", "3", "--image-size", "32", "--num-samples", "8",
        "--cpus-per-trial", "0.25", "--max-concurrent", "8", "--storage", str(folder), "--name", "eight",
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stdout + result.stderr
    finished, runs = finished_trial_runs(f"sqlite:///{folder / 'mlflow.db'}", "eight")
    assert len(runs) == 8
    assert len(finished) == 8
    # MLflow runs open when Tune starts a trial and close when it ends.
    assert max_overlapping_runs(runs) == 8


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server on {url} did not start (exit code {server.poll()})")
            time.sleep(1)
        yield url
    finally:
        # The server forks workers; stop the whole process group it leads.
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_study_against_tracking_server(tmp_path, mlflow_server):
    folder = tmp_path / "served"
    result = run_study_command(
        *TINY, "--num-samples", "2", "--storage", str(folder), "--name", "served", "--tracking-uri", mlflow_server
    )

    assert result.returncode == 0, result.stderr[-3000:]
    finished, runs = finished_trial_runs(mlflow_server, "served")
    assert len(finished) == 2
    client = MlflowClient(tracking_uri=mlflow_server)
    parent = client.get_run(finished[0].data.tags["mlflow.parentRunId"])
    assert "study.yaml" in [item.path for item in client.list_artifacts(parent.info.run_id)]
    assert not (folder / "mlflow.db").exists()
