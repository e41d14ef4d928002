"""Run a loss study: ``python -m study.run --space loss_mix``.

Every check that can fail on the user's input (space, sampler, data, GPUs, storage) runs before
Ray starts a trial. The study folder then contains the resolved config (study.yaml), the Optuna
storage (optuna.db), the MLflow store (mlflow.db, mlartifacts/), Ray Tune's experiment (ray/)
and the report (report/).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from search_spaces import SAMPLERS, SPACES, SearchSpace, get_space
from study.models import build_model, check_model_names
from study.config import STUDY_KEYS, ConfigError, StudyConfig, TrialConfig, coerce_mapping, load_study_file

logger = logging.getLogger("study")

STUDY_FILE = "study.yaml"  # the resolved config, written by the driver
# Files and folders that only a study writes. Any of them means the folder contains a study.
STUDY_RECORDS = (STUDY_FILE, "optuna.db", "mlflow.db", "ray", "manifest.json")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Larger inputs would need tens of GiB for the decoded images alone.
MAX_IMAGE_SIZE = 2048


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m study.run",
        description="Search CE / soft-Dice loss settings with Ray Tune and Optuna, logging every trial to MLflow, "
        "and print the Pareto front between ID Dice and OoD specificity.",
    )
    # Every default is None, so a value set in --config can be distinguished from one left unset.
    what = parser.add_argument_group("what to search")
    what.add_argument("--space", help="name of the search space (see --list-spaces)")
    what.add_argument("--list-spaces", action="store_true", help="print the search spaces and exit")
    what.add_argument("--config", help="study config file (YAML) setting any of these options; flags win")
    what.add_argument("--num-samples", type=int, help="configurations to try (default: 8, or the grid size)")
    what.add_argument("--seeds", type=int, help="seeds per configuration; Optuna sees their mean (default: 1)")
    what.add_argument("--seed-offset", type=int, help="first trial seed; seeds are offset..offset+K-1 (default: 0)")
    what.add_argument("--sampler", choices=SAMPLERS, help="override the space's Optuna sampler")
    what.add_argument("--sampler-seed", type=int, help="seed of the Optuna sampler (default: 0)")
    what.add_argument(
        "--no-initial-points", dest="initial_points", action="store_false", default=None,
        help="skip the space's initial points (e.g. loss_mix's CE, Dice and 0.5/0.5) and let the sampler choose every configuration",
    )

    data = parser.add_argument_group("data and training")
    data.add_argument(
        "--data",
        help="dataset config (YAML) or the name of a shipped preset (kvasir_seg, fuseg, ...); "
        "'synthetic' for the embedded default (default)",
    )
    data.add_argument("--data-root", help="folder that replaces the dataset config's root")
    data.add_argument("--epochs", type=int, help="training epochs per trial (default: 4)")
    data.add_argument(
        "--image-size", type=int, help="network input side in pixels (default: the dataset config's size; 64 for synthetic)"
    )
    data.add_argument("--encoder-weights", help="local encoder weights file (default: random initialisation)")
    data.add_argument("--deterministic", action="store_true", default=None, help="force deterministic torch kernels")

    where = parser.add_argument_group("where results go")
    where.add_argument("--name", help="study name; also the MLflow experiment name (default: the space name)")
    where.add_argument("--storage", help="study folder (default: ./studies/<name>)")
    where.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<storage>/mlflow.db)")
    where.add_argument("--resume", action="store_true", default=None, help="continue the study found in --storage")

    compute = parser.add_argument_group("compute")
    compute.add_argument("--cpus-per-trial", type=float, help="CPUs reserved per trial (default: 1)")
    compute.add_argument("--gpus-per-trial", type=float, help="GPUs per trial; fractions pack trials on a GPU (default: 0)")
    compute.add_argument("--max-concurrent", type=int, help="at most this many trials at once (default: as resources allow)")
    compute.add_argument("--max-failures", type=int, help="retries of a crashed trial (default: 0)")
    compute.add_argument("--address", help="address of a running Ray cluster, e.g. 'auto' (default: start Ray locally)")
    return parser


def resolve_config(args: argparse.Namespace) -> StudyConfig:
    """Merge defaults, the study config file and explicit flags, in that order of precedence."""
    values: dict[str, Any] = load_study_file(args.config) if args.config else {}
    for key, value in vars(args).items():
        if key in ("config", "list_spaces") or value is None:
            continue
        values[key] = value
    if "name" not in values and values.get("space"):
        values["name"] = values["space"]
    if values.get("resume"):
        saved = saved_settings(values)
        for key in ("space", "name"):
            if key in saved and key in values and values[key] != saved[key]:
                raise ConfigError(
                    f"--resume: the study in the folder has {key} {saved[key]!r}, not {values[key]!r}; "
                    f"drop --{key} or give the folder of that study"
                )
        values = {**saved, **values}
    study = StudyConfig(**coerce_mapping(StudyConfig, values, where="study settings "))
    study.resolve_paths()
    return study


def saved_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Return the settings saved by the study that ``--resume`` continues (flags still win)."""
    storage = Path(values["storage"]) if values.get("storage") else Path("studies") / values.get("name", "")
    saved = storage.expanduser().resolve() / STUDY_FILE
    if not saved.is_file():
        return {}
    settings = yaml.safe_load(saved.read_text()) or {}
    return {key: value for key, value in settings.items() if key in STUDY_KEYS and key != "resume"}


def validate(study: StudyConfig) -> SearchSpace:
    """Check the study's settings before Ray starts; raise ConfigError with the fix."""
    if not study.space:
        raise ConfigError(f"--space is required; valid spaces are: {', '.join(SPACES)}")
    try:
        space = get_space(study.space)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if not NAME_PATTERN.fullmatch(study.name):
        raise ConfigError(
            f"--name {study.name!r} is invalid; use letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    if study.sampler is not None and study.sampler not in SAMPLERS:
        raise ConfigError(f"sampler {study.sampler!r} is invalid; expected one of {SAMPLERS}")
    if study.sampler == "grid" and not space.grid:
        raise ConfigError(f"--sampler grid needs a space with a grid; space {space.name!r} has none")
    minimums = (
        ("num_samples", 1), ("epochs", 1), ("seeds", 1), ("image_size", 32), ("max_concurrent", 1),
        ("seed_offset", 0), ("sampler_seed", 0), ("max_failures", 0),
    )
    for name, minimum in minimums:
        value = getattr(study, name)
        if value is not None and value < minimum:
            raise ConfigError(f"--{name.replace('_', '-')}={value} is invalid; expected at least {minimum}")
    if study.image_size is not None and (study.image_size % 32 or study.image_size > MAX_IMAGE_SIZE):
        raise ConfigError(
            f"--image-size={study.image_size} is invalid; expected a multiple of 32 up to {MAX_IMAGE_SIZE} "
            "(smp decoders other than Unet halve the input five times)"
        )
    if study.data == "synthetic" and study.data_root:
        logger.warning("--data-root %s is ignored: the synthetic data set reads no files", study.data_root)
    if not math.isfinite(study.cpus_per_trial) or not math.isfinite(study.gpus_per_trial):
        raise ConfigError(
            f"--cpus-per-trial={study.cpus_per_trial} / --gpus-per-trial={study.gpus_per_trial} are invalid; expected numbers"
        )
    if study.cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial={study.cpus_per_trial} is invalid; expected a positive number")
    if study.gpus_per_trial < 0 or (study.gpus_per_trial > 1 and study.gpus_per_trial != int(study.gpus_per_trial)):
        raise ConfigError(
            f"--gpus-per-trial={study.gpus_per_trial} is invalid; expected 0, a fraction below 1, or a whole number"
        )
    if study.gpus_per_trial > 0 and not study.address:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"--gpus-per-trial={study.gpus_per_trial:g} but torch finds no CUDA GPU on this machine; "
                "use --gpus-per-trial 0, or --address to join a Ray cluster with GPUs"
            )
    if study.encoder_weights and not Path(study.encoder_weights).is_file():
        raise ConfigError(
            f"--encoder-weights file {study.encoder_weights} not found; give a local weights file or omit the flag"
        )
    return space


def base_trial_config(space: SearchSpace, study: StudyConfig) -> dict[str, Any]:
    """Return settings shared by every trial: study flags < the space's fixed < 'trial' in the file."""
    base: dict[str, Any] = {"epochs": study.epochs, "deterministic": bool(study.deterministic)}
    if study.encoder_weights:
        base["encoder_weights"] = str(Path(study.encoder_weights).resolve())
    base.update(space.fixed)
    base.update(study.trial)
    trial = TrialConfig.from_mapping(base)
    try:
        check_model_names(trial.architecture, trial.encoder)
        if trial.encoder_weights:
            build_model(trial.architecture, trial.encoder, encoder_weights=trial.encoder_weights)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise ConfigError(f"trial model settings are invalid: {error}") from error
    except Exception as error:  # torch.load raises many types on a file that is not a state dict
        raise ConfigError(f"encoder weights file {trial.encoder_weights} cannot be loaded: {error!r}") from error
    # The typed values, so a YAML string such as "3e-4" reaches the trials as a float.
    return {key: getattr(trial, key) for key in base}


def prepare_storage(study: StudyConfig) -> Path:
    """Check the study folder, and reject one that contains a study unless resuming.

    The driver creates the folder once the data and resources have been checked.
    """
    folder = Path(study.storage)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--storage {folder} is a file; give a folder for the study")
    records = [name for name in STUDY_RECORDS if (folder / name).exists()]
    if records and not study.resume:
        raise ConfigError(
            f"study folder {folder} already contains a study ({', '.join(records)}); pass --resume to continue it, "
            "or give another --storage (or --name, when --storage is not set)"
        )
    if study.resume and not (folder / STUDY_FILE).exists():
        raise ConfigError(f"--resume: no study found in {folder} (missing {STUDY_FILE}); check --storage")
    existing = next((parent for parent in (folder, *folder.parents) if parent.exists()), None)
    if existing is None or not os.access(existing, os.W_OK):
        raise ConfigError(f"--storage {folder} cannot be created: {existing} is not writable; choose another folder")
    return folder


def list_spaces() -> str:
    width = max(len(name) for name in SPACES)
    lines = [f"{name:<{width}}  [{space.sampler}] {space.description}" for name, space in SPACES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_spaces:
        print(list_spaces())
        return 0

    try:
        study = resolve_config(args)
        space = validate(study)
        base = base_trial_config(space, study)
        folder = prepare_storage(study)
    except ConfigError as error:
        parser.exit(2, f"error: {error}\n")

    from study.driver import run_study

    try:
        return run_study(study, space, base, folder)
    except ConfigError as error:
        parser.exit(2, f"error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
