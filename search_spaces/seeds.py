"""Fixed loss settings repeated over seeds, to measure seed variance alone."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.base import SearchSpace

CE_WEIGHTS = [0.0, 0.5, 1.0]


def sample(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_categorical("ce_weight", CE_WEIGHTS)
    return {}


SPACE = SearchSpace(
    name="seeds",
    description="CE, 0.5 CE + 0.5 Dice and Dice as a grid; run with --seeds N to measure seed variance",
    sample=sample,
    sampler="grid",
    grid={"ce_weight": CE_WEIGHTS},
)
