"""Typed configuration: the study as a whole, and one trial.

A trial's sampled config (a flat dict from the searcher) becomes a ``TrialConfig`` in one
place, ``TrialConfig.from_mapping``; builders of losses, models and loaders only ever see its
typed fields.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

OPTIMIZERS = ("nadam", "adamw")
DICE_VARIANTS = ("per_image", "batch")
REGION_LOSSES = ("dice", "tversky")
CE_LOSSES = ("ce", "focal")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class ConfigError(ValueError):
    """An invalid study or trial setting, named with the value that was given."""


_TYPE_WORDS = {"int": "a whole number", "float": "a finite number", "bool": "true or false", "str": "a string", "dict": "a mapping"}


def _coerce(name: str, value: Any, annotation: str, where: str) -> Any:
    """Convert a YAML or command-line value to the field's type, or raise ConfigError.

    YAML reads ``3e-4`` (no dot) as a string, so numeric strings are converted; booleans are
    never taken for numbers, and a number is never taken for a boolean.
    """
    kinds = annotation.replace(" ", "").split("|")
    if value is None and "None" in kinds:
        return value
    wanted = " or ".join(_TYPE_WORDS.get(kind.split("[")[0], kind) for kind in kinds if kind != "None")
    invalid = ConfigError(f"{where}{name}={value!r} is invalid; expected {wanted}")
    if "bool" in kinds:
        if isinstance(value, bool):
            return value
        raise invalid
    if isinstance(value, bool) and ("int" in kinds or "float" in kinds):
        raise invalid
    if "int" in kinds:
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            raise invalid from None
        if not isinstance(number, (int, float)) or not math.isfinite(number) or number != int(number):
            raise invalid
        return int(number)
    if "float" in kinds:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise invalid from None
        if not math.isfinite(number):
            raise invalid
        return number
    if "str" in kinds and not isinstance(value, str):
        raise invalid
    if kinds[0].startswith("dict") and not isinstance(value, dict):
        raise invalid
    return value


def coerce_mapping(cls, values: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Return ``values`` with each entry converted to the type of ``cls``'s field of that name."""
    fields = {item.name: item for item in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown {where or 'settings '}{unknown}; valid settings are {sorted(fields)}")
    return {key: _coerce(key, value, str(fields[key].type), where) for key, value in values.items()}


@dataclass(frozen=True)
class TrialConfig:
    """Everything one training run needs, as typed values.

    Loss: ``ce_weight`` * CE-family loss + (1 - ``ce_weight``) * region loss; the weight
    follows ``loss_schedule`` over the epochs (see ``study.losses.ce_weight_at``).
    """

    seed: int = 0
    epochs: int = 4
    batch_size: int = 16

    architecture: str = "Unet"
    encoder: str = "tu-resnet18"
    encoder_weights: str | None = None

    ce_weight: float = 0.5
    loss_schedule: str = "constant"
    finetune_fraction: float = 0.1
    ce_loss: str = "ce"
    focal_gamma: float = 2.0
    region_loss: str = "dice"
    dice_variant: str = "per_image"
    dice_smooth: float = 0.0
    log_dice: bool = False
    tversky_alpha: float = 0.5
    tversky_beta: float = 0.5

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    augmentation: str = "flips"

    threshold: float = 0.5
    min_area: int = 0
    precision: str = "auto"
    deterministic: bool = False
    num_workers: int = 0

    # Labels set by the searcher, not read by training: the configuration a seed belongs to,
    # and the named loss setting of grid spaces such as the reference grid.
    config_id: str = ""
    loss_setting: str = ""

    def __post_init__(self) -> None:
        choices = {
            "optimizer": OPTIMIZERS,
            "dice_variant": DICE_VARIANTS,
            "region_loss": REGION_LOSSES,
            "ce_loss": CE_LOSSES,
            "precision": PRECISIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid; expected one of {allowed}")
        if not 0.0 <= self.ce_weight <= 1.0 or math.isnan(self.ce_weight):
            raise ConfigError(f"ce_weight={self.ce_weight} is invalid; expected a value in [0, 1]")
        if not 0.0 < self.finetune_fraction < 1.0:
            raise ConfigError(f"finetune_fraction={self.finetune_fraction} is invalid; expected a value in (0, 1)")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} is invalid; expected at least 1")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr} is invalid; expected a positive learning rate")
        for name in ("seed", "min_area", "num_workers", "weight_decay", "focal_gamma", "tversky_alpha", "tversky_beta", "dice_smooth"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} is invalid; expected a value of at least 0")
        from study.data.transforms import AUGMENTATIONS
        from study.losses import SCHEDULES
        from study.models import ARCHITECTURES

        for name, allowed in (("loss_schedule", SCHEDULES), ("augmentation", AUGMENTATIONS), ("architecture", tuple(ARCHITECTURES))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid; expected one of {allowed}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold={self.threshold} is invalid; expected a probability in (0, 1)")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "TrialConfig":
        """Build a trial config from a sampled or configured dict; reject unknown keys and types."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"trial settings must be a mapping of name: value, got {values!r}")
        return cls(**coerce_mapping(cls, values, where="trial settings "))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Study settings that a study config file (YAML) and the command line share. Each maps to its
# default; ``None`` means "decided at run time" (see ``StudyConfig``).
@dataclass
class StudyConfig:
    """The resolved settings of one study, saved in its folder and logged to MLflow."""

    space: str | None = None
    data: str = "synthetic"
    data_root: str | None = None
    num_samples: int | None = None
    epochs: int = 4
    seeds: int = 1
    seed_offset: int = 0
    image_size: int | None = None
    name: str = "loss_mix"
    storage: str | None = None
    tracking_uri: str | None = None
    sampler: str | None = None
    sampler_seed: int = 0
    # Run the space's initial points first (e.g. CE, Dice and 0.5/0.5 for loss_mix). Off when
    # another study already ran those settings with the same seeds.
    initial_points: bool = True
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    address: str | None = None
    resume: bool = False
    max_failures: int = 0
    encoder_weights: str | None = None
    deterministic: bool = False
    trial: dict[str, Any] = field(default_factory=dict)

    def resolve_paths(self) -> None:
        """Make ``storage`` absolute and derive the default tracking URI from it."""
        storage = Path(self.storage) if self.storage else Path("studies") / self.name
        self.storage = str(storage.expanduser().resolve())
        if not self.tracking_uri:
            self.tracking_uri = f"sqlite:///{Path(self.storage) / 'mlflow.db'}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


STUDY_KEYS = tuple(item.name for item in dataclasses.fields(StudyConfig))


def load_study_file(path: str | Path) -> dict[str, Any]:
    """Read a study config file (YAML mapping of ``StudyConfig`` keys).

    Raises:
        ConfigError: when the file is missing, is not a mapping, or has unknown keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study config file {path} not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"study config file {path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"study config file {path} must hold a mapping of settings, got {type(values).__name__}")
    unknown = sorted(set(values) - set(STUDY_KEYS))
    if unknown:
        raise ConfigError(f"unknown keys {unknown} in study config file {path}; valid keys are {sorted(STUDY_KEYS)}")
    trial_keys = {item.name for item in dataclasses.fields(TrialConfig)}
    unknown_trial = sorted(set(values.get("trial") or {}) - trial_keys)
    if unknown_trial:
        raise ConfigError(
            f"unknown trial settings {unknown_trial} under 'trial' in {path}; valid settings are {sorted(trial_keys)}"
        )
    return values
