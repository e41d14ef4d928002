"""smp decoders x timm encoders x CE weight."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.base import SearchSpace

DECODERS = ["Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus", "Segformer"]
# Three families at two sizes: residual, depthwise-separable mobile, and EfficientNet.
ENCODERS = ["tu-resnet18", "tu-resnet34", "tu-mobilenetv3_small_100", "tu-mobilenetv3_large_100", "tu-efficientnet_b0"]


def sample(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_categorical("architecture", DECODERS)
    trial.suggest_categorical("encoder", ENCODERS)
    trial.suggest_float("ce_weight", 0.0, 1.0)
    return {}


SPACE = SearchSpace(
    name="architectures",
    description="smp decoder (Unet, Unet++, FPN, DeepLabV3+, Segformer) x timm encoder x CE weight",
    sample=sample,
)
