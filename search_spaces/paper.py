"""The five loss settings of Galdran et al. (2022) as a grid, with their model and recipe.

Source: A. Galdran, G. Carneiro, M. A. González Ballester, "On the Optimal Combination of
Cross-Entropy and Soft Dice Losses for Lesion Segmentation with Out-of-Distribution
Robustness", DFUC 2022, arXiv:2209.06078. Model: a W-Net (two FPNs in cascade, both outputs
supervised); NAdam at lr 3e-4, batch 8, cosine decay per step; affine, colour-jitter and flip
augmentation; threshold 0.5.
"""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.base import SearchSpace

# Each setting maps to the trial settings that realise it.
SETTINGS: dict[str, dict[str, Any]] = {
    "ce": {"loss_schedule": "constant", "ce_weight": 1.0},
    "dice": {"loss_schedule": "constant", "ce_weight": 0.0},
    "combo": {"loss_schedule": "constant", "ce_weight": 0.5},
    "linear": {"loss_schedule": "linear", "ce_weight": 1.0},
    "finetune": {"loss_schedule": "finetune", "ce_weight": 1.0, "finetune_fraction": 0.1},
}


def sample(trial: optuna.Trial) -> dict[str, Any]:
    setting = trial.suggest_categorical("loss_setting", list(SETTINGS))
    return dict(SETTINGS[setting])


SPACE = SearchSpace(
    name="paper",
    description="reference grid: CE, Dice, 0.5/0.5, linear CE->Dice, fine-tune; W-Net of two FPNs, NAdam 3e-4",
    sample=sample,
    fixed={
        "architecture": "WNet",
        "encoder": "tu-resnet18",
        "optimizer": "nadam",
        "lr": 3e-4,
        "weight_decay": 0.0,
        "batch_size": 8,
        "augmentation": "reference",
        "dice_variant": "per_image",
    },
    sampler="grid",
    grid={"loss_setting": list(SETTINGS)},
)
