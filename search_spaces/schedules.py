"""Schedules of the CE weight over training: constant, linear CE->Dice, or CE then Dice fine-tuning."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.base import SearchSpace


def sample(trial: optuna.Trial) -> dict[str, Any]:
    schedule = trial.suggest_categorical("loss_schedule", ["constant", "linear", "finetune"])
    if schedule == "constant":
        trial.suggest_float("ce_weight", 0.0, 1.0)
    elif schedule == "finetune":
        trial.suggest_float("finetune_fraction", 0.05, 0.5)
    return {}


SPACE = SearchSpace(
    name="schedules",
    description="CE-weight schedule (constant lambda, linear CE->Dice, CE then Dice fine-tune) and its parameter",
    sample=sample,
    initial_points=(
        {"loss_schedule": "linear"},
        {"loss_schedule": "finetune", "finetune_fraction": 0.1},
        {"loss_schedule": "constant", "ce_weight": 0.5},
    ),
)
