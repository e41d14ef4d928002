"""One training run as a plain function, without Ray or MLflow."""

from __future__ import annotations

import math

import pytest

from study.config import ConfigError, TrialConfig
from study.data.synthetic import SyntheticConfig, make_synthetic_bundle
from study.train import OBJECTIVES, TrialDiverged, train_trial

TINY = SyntheticConfig(image_size=32, num_train=16, num_id_val=4, num_id_test=4, num_ood_val=4, num_ood_test=4)


@pytest.fixture(scope="module")
def tiny_data():
    return make_synthetic_bundle(TINY)


def run(config, data):
    reports = []
    train_trial(config, data, report=lambda metrics, folder: reports.append((metrics, sorted(p.name for p in folder.iterdir()))))
    return reports


def test_reports_every_epoch_with_checkpoint(tiny_data):
    reports = run(TrialConfig(epochs=2, batch_size=8, seed=0), tiny_data)

    assert [metrics["epoch"] for metrics, _ in reports] == [1, 2]
    assert all(files == ["checkpoint.pt"] for _, files in reports)
    for metrics, _ in reports:
        for name in OBJECTIVES:
            assert math.isfinite(metrics[name])
    assert "test_id_dice" not in reports[0][0]
    assert "test_id_dice" in reports[1][0]


def test_same_seed_identical_metrics(tiny_data):
    config = TrialConfig(epochs=1, batch_size=8, seed=5, augmentation="reference")

    first = run(config, tiny_data)[-1][0]
    second = run(config, tiny_data)[-1][0]

    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name] or (math.isnan(first[name]) and math.isnan(second[name])), name


def test_diverging_loss_fails_trial(tiny_data):
    config = TrialConfig(epochs=3, batch_size=8, lr=1e30, optimizer="adamw")

    with pytest.raises(TrialDiverged, match="non-finite|undefined"):
        run(config, tiny_data)


def test_wnet_cascade_trains(tiny_data):
    reports = run(TrialConfig(epochs=1, batch_size=8, architecture="WNet", loss_schedule="finetune"), tiny_data)

    assert math.isfinite(reports[-1][0]["id_dice"])


def test_unknown_trial_setting_rejected():
    with pytest.raises(ConfigError, match=r"unknown trial settings \['learning_rate'\]"):
        TrialConfig.from_mapping({"learning_rate": 0.1})


def test_invalid_ce_weight_rejected():
    with pytest.raises(ConfigError, match=r"ce_weight=1.5 is invalid"):
        TrialConfig(ce_weight=1.5)
