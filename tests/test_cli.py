"""Command-line checks that must fail before Ray starts a trial."""

from __future__ import annotations

import pytest
import torch
import yaml

from search_spaces import SPACES
from study.config import ConfigError
from study.run import build_parser, list_spaces, resolve_config, validate
from tests.conftest import run_study_command


def test_unknown_space_lists_valid_ones(tmp_path):
    result = run_study_command("--space", "nosuch", "--storage", str(tmp_path / "s"))

    assert result.returncode != 0
    assert "nosuch" in result.stderr
    for name in SPACES:
        assert name in result.stderr
    assert not (tmp_path / "s" / "study.yaml").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_request_without_gpu_fails_early(tmp_path):
    result = run_study_command("--space", "loss_mix", "--gpus-per-trial", "1", "--storage", str(tmp_path / "s"))

    assert result.returncode == 2
    assert "--gpus-per-trial=1" in result.stderr
    assert "no CUDA GPU" in result.stderr
    assert "Started" not in result.stdout


def test_list_spaces_names_every_space():
    text = list_spaces()

    for name, space in SPACES.items():
        assert name in text
        assert space.description in text


def test_space_is_required():
    study = resolve_config(build_parser().parse_args([]))

    with pytest.raises(ConfigError, match="--space is required"):
        validate(study)


def test_flags_override_config_file(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"space": "loss_mix", "epochs": 7, "seeds": 2, "trial": {"lr": 0.01}}))

    study = resolve_config(build_parser().parse_args(["--config", str(config), "--epochs", "3"]))

    assert study.epochs == 3
    assert study.seeds == 2
    assert study.trial == {"lr": 0.01}
    assert study.name == "loss_mix"


def test_storage_made_absolute_and_tracking_derived(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = resolve_config(build_parser().parse_args(["--space", "loss_mix", "--storage", "rel"]))

    assert study.storage == str(tmp_path / "rel")
    assert study.tracking_uri == f"sqlite:///{tmp_path / 'rel' / 'mlflow.db'}"


def test_config_file_unknown_key_rejected(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text("space: loss_mix\nepoch: 3\n")

    with pytest.raises(ConfigError, match=r"unknown keys \['epoch'\]"):
        resolve_config(build_parser().parse_args(["--config", str(config)]))


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--epochs", "0", "--epochs=0 is invalid"),
        ("--seeds", "0", "--seeds=0 is invalid"),
        ("--num-samples", "0", "--num-samples=0 is invalid"),
        ("--cpus-per-trial", "0", "--cpus-per-trial=0.0 is invalid"),
        ("--gpus-per-trial", "1.5", "--gpus-per-trial=1.5 is invalid"),
    ],
)
def test_invalid_numbers_rejected(flag, value, message):
    study = resolve_config(build_parser().parse_args(["--space", "loss_mix", flag, value]))

    with pytest.raises(ConfigError) as error:
        validate(study)
    assert message in str(error.value)


def test_existing_study_folder_needs_resume(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "study.yaml").write_text("space: loss_mix\n")

    result = run_study_command("--space", "loss_mix", "--storage", str(folder))

    assert result.returncode == 2
    assert "already contains a study" in result.stderr
    assert (folder / "study.yaml").read_text() == "space: loss_mix\n"
