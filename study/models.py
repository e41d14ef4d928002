"""Segmentation models: smp decoders over timm encoders, plus the two-stage W-Net cascade.

Encoders start from random weights unless a local weights file is given, so no trial ever
downloads anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """One smp decoder the study can build.

    Attributes:
        name: the smp class name, as given in a search space or on the command line.
        builder: the smp class.
        min_image_size: the smallest input side the decoder handles at its default depth.
    """

    name: str
    builder: type[nn.Module]
    min_image_size: int = 32


ARCHITECTURES: dict[str, Architecture] = {
    entry.name: entry
    for entry in (
        Architecture("Unet", smp.Unet),
        Architecture("UnetPlusPlus", smp.UnetPlusPlus),
        Architecture("FPN", smp.FPN),
        Architecture("DeepLabV3Plus", smp.DeepLabV3Plus),
        Architecture("Segformer", smp.Segformer),
        Architecture("WNet", smp.FPN),
    )
}


class WNet(nn.Module):
    """Two segmentation networks in cascade, both outputs supervised.

    The second stage sees the RGB image concatenated with the first stage's logits, so it can
    correct the first stage's mistakes. ``forward`` returns both logits in training mode (the
    loss sums over them) and only the second stage's logits in evaluation mode.
    """

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first = first
        self.second = second

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        first_logits = self.first(images)
        second_logits = self.second(torch.cat([images, first_logits], dim=1))
        if self.training:
            return first_logits, second_logits
        return second_logits


def check_model_names(architecture: str, encoder: str) -> None:
    """Raise ValueError on an unknown architecture or timm encoder name."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; expected one of {sorted(ARCHITECTURES)}"
        )
    if not encoder.startswith("tu-"):
        return
    import timm

    timm_name = encoder.removeprefix("tu-")
    if not timm.list_models(timm_name):
        raise ValueError(
            f"unknown timm encoder {timm_name!r} in {encoder!r}; list the names with "
            "timm.list_models(), e.g. 'tu-resnet18'"
        )


def _load_encoder_weights(model: nn.Module, weights: Path) -> None:
    """Load a local encoder state dict into every smp stage's ``encoder`` attribute."""
    if not weights.is_file():
        raise FileNotFoundError(
            f"encoder weights file {weights} not found; pass an existing .pth/.safetensors file "
            "or omit --encoder-weights to start from random weights"
        )
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    stages = [model.first, model.second] if isinstance(model, WNet) else [model]
    for stage in stages:
        # timm encoders wrap the timm network in `.model`; smp's own encoders are the network.
        target = getattr(stage.encoder, "model", stage.encoder)
        own_keys = set(target.state_dict())
        if not own_keys & set(state):
            raise ValueError(
                f"encoder weights file {weights} shares no parameter names with the encoder; "
                "expected a state dict of the same timm model"
            )
        # The second W-Net stage has 4 input channels, so its first convolution cannot take
        # RGB weights; strict=False keeps every other layer's weights.
        target.load_state_dict(
            {key: value for key, value in state.items() if key in own_keys and value.shape == target.state_dict()[key].shape},
            strict=False,
        )


def build_model(
    architecture: str,
    encoder: str,
    in_channels: int = 3,
    encoder_weights: str | None = None,
) -> nn.Module:
    """Build a one-channel (logit) segmentation model.

    Args:
        architecture: a key of ``ARCHITECTURES``; "WNet" is a cascade of two FPNs.
        encoder: an smp encoder name; timm encoders carry the "tu-" prefix (e.g. "tu-resnet18").
        in_channels: input channels of the first stage.
        encoder_weights: path of a local timm state dict for the encoder, or None for random
            initialisation. Never a hub name: trials must not download weights.

    Raises:
        ValueError: on an unknown architecture or timm encoder name.
        FileNotFoundError: when ``encoder_weights`` does not exist.
    """
    check_model_names(architecture, encoder)
    builder = ARCHITECTURES[architecture].builder
    if architecture == "WNet":
        model: nn.Module = WNet(
            builder(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=1),
            builder(encoder_name=encoder, encoder_weights=None, in_channels=in_channels + 1, classes=1),
        )
    else:
        model = builder(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=1)
    if encoder_weights:
        _load_encoder_weights(model, Path(encoder_weights))
    return model
