"""Command-line checks that must fail before Ray starts a trial."""

from __future__ import annotations

import pytest
import torch
import yaml

from search_spaces import SPACES
from study.config import ConfigError
from study.run import base_trial_config, build_parser, list_spaces, prepare_storage, resolve_config, validate
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


def parse(*argv):
    return resolve_config(build_parser().parse_args(list(argv)))


def test_yaml_number_strings_become_floats(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text("space: loss_mix\ntrial: {lr: 3e-4, weight_decay: 1e-5, batch_size: 8}\n")
    study = parse("--config", str(config))

    base = base_trial_config(validate(study), study)

    assert base["lr"] == 3e-4
    assert base["weight_decay"] == 1e-5
    assert base["batch_size"] == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seeds: 1.5\n", "seeds=1.5 is invalid"),
        ("epochs: ten\n", "epochs='ten' is invalid"),
        ("resume: 'no'\n", "resume='no' is invalid"),
        ("trial: [lr]\n", "trial=['lr'] is invalid"),
    ],
)
def test_config_file_wrong_types_rejected(tmp_path, text, message):
    config = tmp_path / "study.yaml"
    config.write_text("space: loss_mix\n" + text)

    with pytest.raises(ConfigError) as error:
        parse("--config", str(config))
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("trial", "message"),
    [
        ("{architecture: Nope}", "architecture='Nope' is invalid"),
        ("{encoder: tu-nosuchnet}", "unknown timm encoder 'nosuchnet'"),
        ("{loss_schedule: cosine}", "loss_schedule='cosine' is invalid"),
        ("{lr: fast}", "lr='fast' is invalid"),
        ("{min_area: -1}", "min_area=-1 is invalid"),
    ],
)
def test_bad_trial_settings_rejected_before_ray(tmp_path, trial, message):
    config = tmp_path / "study.yaml"
    config.write_text(f"space: loss_mix\ntrial: {trial}\n")
    study = parse("--config", str(config))

    with pytest.raises(ConfigError) as error:
        base_trial_config(validate(study), study)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--name", ".."], "--name '..' is invalid"),
        (["--image-size", "33"], "--image-size=33 is invalid"),
        (["--max-failures", "-1"], "--max-failures=-1 is invalid"),
        (["--seed-offset", "-1"], "--seed-offset=-1 is invalid"),
        (["--gpus-per-trial", "nan"], "gpus_per_trial=nan is invalid; expected a finite number"),
    ],
)
def test_bad_flags_rejected(argv, message):
    with pytest.raises(ConfigError) as error:
        validate(parse("--space", "loss_mix", *argv))
    assert message in str(error.value)


def test_folder_with_records_needs_resume(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "mlflow.db").write_bytes(b"records")

    with pytest.raises(ConfigError, match=r"already contains a study \(mlflow.db\)"):
        prepare_storage(parse("--space", "loss_mix", "--storage", str(folder)))
    assert (folder / "mlflow.db").read_bytes() == b"records"


def test_resume_with_other_space_rejected(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "study.yaml").write_text(yaml.safe_dump({"space": "loss_mix", "name": "s", "epochs": 3}))

    with pytest.raises(ConfigError, match="has space 'loss_mix', not 'paper'"):
        parse("--resume", "--storage", str(folder), "--space", "paper")
    assert parse("--resume", "--storage", str(folder)).epochs == 3


def first_configuration(tmp_path, *flags):
    """Return the first configuration a loss_mix study's searcher suggests with these flags."""
    from study.tuning import build_searcher

    study = resolve_config(build_parser().parse_args(["--space", "loss_mix", "--storage", str(tmp_path), *flags]))
    tmp_path.mkdir(parents=True, exist_ok=True)
    searcher = build_searcher(validate(study), study, {"epochs": 1}, num_configs=3)
    return searcher.suggest("t0")


def test_initial_points_run_first_by_default(tmp_path):
    config = first_configuration(tmp_path)

    assert config["ce_weight"] == 0.0
    assert config["dice_variant"] == "per_image"


def test_no_initial_points_flag_skips_them(tmp_path):
    config = first_configuration(tmp_path, "--no-initial-points")

    assert config["ce_weight"] not in (0.0, 0.5, 1.0)


def test_initial_points_off_in_config_file(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text("space: loss_mix\ninitial_points: false\n")

    study = resolve_config(build_parser().parse_args(["--config", str(config)]))

    assert study.initial_points is False
