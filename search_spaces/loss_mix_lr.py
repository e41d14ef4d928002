"""The loss_mix space with the learning rate searched too."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces import loss_mix
from search_spaces.base import SearchSpace


def sample(trial: optuna.Trial) -> dict[str, Any]:
    derived = loss_mix.sample(trial)
    trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    return derived


SPACE = SearchSpace(
    name="loss_mix_lr",
    description="loss_mix plus the learning rate, log-uniform in [1e-4, 3e-3]",
    sample=sample,
    initial_points=tuple({**point, "lr": 1e-3} for point in loss_mix.SPACE.initial_points),
)
