"""Replaying a recorded trial from MLflow, and refusing when its data changed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from study.data.synthetic import SyntheticConfig, make_synthetic_bundle
from tests.conftest import REPO, run_study_command

pytestmark = pytest.mark.slow

SMALL = ["--space", "loss_mix", "--num-samples", "1", "--epochs", "1", "--image-size", "32"]


def replay_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study.replay", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def only_trial_run(folder, name):
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`lesion_study.role` = 'trial'")
    assert len(runs) == 1
    return runs[0]


def write_dataset(root):
    """Write a tiny real-file dataset (PNG images and 0/255 masks) and its config."""
    bundle = make_synthetic_bundle(
        SyntheticConfig(image_size=32, num_train=10, num_id_val=1, num_id_test=1, num_ood_val=8, num_ood_test=1)
    )
    for folder in ("images", "masks", "lesion_free"):
        (root / folder).mkdir(parents=True)
    for index, (image, mask) in enumerate(zip(bundle.splits["train"].images, bundle.splits["train"].masks)):
        Image.fromarray(image).save(root / "images" / f"{index:04d}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"{index:04d}.png")
    for index, image in enumerate(bundle.splits["ood_val"].images):
        Image.fromarray(image).save(root / "lesion_free" / f"{index:04d}.png")
    config = root / "tiny.yaml"
    config.write_text(
        "id_sources:\n  - {layout: folders, images: images, masks: masks}\n"
        "ood_sources:\n  - {layout: folder, images: lesion_free}\n"
        "split: {val_fraction: 0.3, test_fraction: 0.2, seed: 0}\n"
        "image_size: 32\n"
    )
    return config


def test_replay_by_run_id_reproduces_metrics(tmp_path):
    folder = tmp_path / "study"
    result = run_study_command(*SMALL, "--storage", str(folder), "--name", "r1")
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_trial_run(folder, "r1")

    replayed = replay_command(run.info.run_id, "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}")

    assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-3000:]
    assert "metrics identical to the recorded run" in replayed.stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["data"]["content_hash"] == run.data.tags["data_hash"]
    assert manifest["versions"]["torch"]
    assert manifest["search"]["space"] == "loss_mix"


def test_replay_refuses_changed_image(tmp_path):
    config = write_dataset(tmp_path / "data")
    folder = tmp_path / "study"
    result = run_study_command(*SMALL, "--data", str(config), "--storage", str(folder), "--name", "r2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = only_trial_run(folder, "r2")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "images/0003.png" in manifest["data"]["files"]

    # Change one pixel of one training image.
    path = tmp_path / "data" / "images" / "0003.png"
    pixels = np.array(Image.open(path))
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(path)

    replayed = replay_command("--storage", str(folder), "--trial", run.info.run_name)

    assert replayed.returncode == 2
    assert "changed: images/0003.png" in replayed.stderr
    assert "--allow-data-change" in replayed.stderr
