"""Model registry: every architecture builds and predicts one logit channel."""

from __future__ import annotations

import pytest
import torch

from study.models import ARCHITECTURES, WNet, build_model


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_architecture_outputs_one_channel(architecture):
    model = build_model(architecture, "tu-resnet18")
    model.eval()

    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))

    assert logits.shape == (2, 1, 64, 64)


def test_wnet_returns_both_stages_in_training():
    model = build_model("WNet", "tu-resnet18")
    model.train()

    outputs = model(torch.randn(2, 3, 64, 64))

    assert isinstance(model, WNet)
    assert len(outputs) == 2
    assert all(output.shape == (2, 1, 64, 64) for output in outputs)


def test_unknown_architecture_lists_valid():
    with pytest.raises(ValueError, match="unknown architecture 'Unet3'.*'FPN'"):
        build_model("Unet3", "tu-resnet18")


def test_unknown_timm_encoder():
    with pytest.raises(ValueError, match="unknown timm encoder 'resnet999'"):
        build_model("Unet", "tu-resnet999")


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="omit --encoder-weights"):
        build_model("Unet", "tu-resnet18", encoder_weights=str(tmp_path / "none.pth"))


def test_local_weights_loaded(tmp_path):
    import timm

    source = timm.create_model("resnet18", features_only=True, pretrained=False)
    torch.nn.init.constant_(source.conv1.weight, 0.5)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)

    model = build_model("Unet", "tu-resnet18", encoder_weights=str(path))

    assert torch.all(model.encoder.model.conv1.weight == 0.5)
