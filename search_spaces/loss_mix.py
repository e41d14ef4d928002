"""The CE weight of a CE + soft-Dice mixture, searched continuously."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.base import SearchSpace


def sample(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float("ce_weight", 0.0, 1.0)
    trial.suggest_categorical("dice_variant", ["per_image", "batch"])
    return {}


SPACE = SearchSpace(
    name="loss_mix",
    description="CE weight lambda in [0, 1] of lambda*CE + (1-lambda)*soft Dice, and the Dice variant (per image or batch)",
    sample=sample,
    # The two pure losses and the even mixture anchor the front before the sampler explores.
    initial_points=(
        {"ce_weight": 0.0, "dice_variant": "per_image"},
        {"ce_weight": 1.0, "dice_variant": "per_image"},
        {"ce_weight": 0.5, "dice_variant": "per_image"},
    ),
)
