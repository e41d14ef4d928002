"""Losses, the CE/region mixture and the CE-weight schedules on inputs checked by hand."""

import math

import pytest
import torch

from study.losses import (
    LOSSES,
    SCHEDULES,
    MixtureLoss,
    build_loss,
    ce_weight_at,
    loss_family,
)

LOG3 = math.log(3.0)  # sigmoid(log 3) = 0.75, sigmoid(-log 3) = 0.25


def two_image_batch():
    """Image 1: p = [0.75, 0.25], y = [1, 0]. Image 2: p = [0.5, 0.5], y = [1, 1]."""
    logits = torch.tensor([[[[LOG3, -LOG3]]], [[[0.0, 0.0]]]], dtype=torch.float64)
    target = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]]], dtype=torch.float64)
    return logits, target


# Cross-entropy and focal loss.


def test_ce_single_channel_value():
    logits = torch.tensor([[[[2.0, -1.0]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    loss = build_loss("ce")(logits, target)

    # mean(log(1 + e^-2), log(1 + e^-1)) = mean(0.126928, 0.313262)
    assert loss.item() > 0
    assert loss.item() == pytest.approx(0.2200948, abs=1e-6)


def test_ce_pos_weight():
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    loss = build_loss("ce", pos_weight=3.0)(logits, target)

    # (3 log 2 + log 2) / 2 = 2 log 2
    assert loss.item() == pytest.approx(2 * math.log(2), abs=1e-6)


def test_focal_gamma_zero_equals_ce():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 5, 4)
    target = (torch.rand(3, 1, 5, 4) > 0.6).float()
    focal = build_loss("focal", gamma=0.0)(logits, target)
    ce = build_loss("ce")(logits, target)

    assert torch.allclose(focal, ce, rtol=0, atol=1e-7)


def test_focal_value_with_alpha():
    logits = torch.zeros(1, 1, 1, 1)
    target = torch.ones(1, 1, 1, 1)

    # p_t = 0.5: (1 - 0.5)^2 log 2 = 0.173287, times alpha = 0.25 gives 0.043322
    assert build_loss("focal")(logits, target).item() == pytest.approx(0.1732868, abs=1e-6)
    weighted = build_loss("focal", alpha=0.25)(logits, target)
    assert weighted.item() == pytest.approx(0.0433217, abs=1e-6)


# Soft Dice and Tversky.


def test_dice_per_image_and_batch_differ():
    logits, target = two_image_batch()

    # Per image: D1 = 2*0.75 / (1 + 1) = 0.75, D2 = 2*1 / (1 + 2) = 2/3;
    # loss = mean(0.25, 1/3) = 0.291667.
    per_image = build_loss("dice", per_image=True)(logits, target)
    # Batch: D = 2*1.75 / (2 + 3) = 0.7; loss = 0.3.
    batch = build_loss("dice", per_image=False)(logits, target)

    assert per_image.item() == pytest.approx(0.2916667, abs=1e-6)
    assert batch.item() == pytest.approx(0.3, abs=1e-9)


def test_dice_log_and_squared():
    logits, target = two_image_batch()
    first_logits, first_target = logits[:1], target[:1]

    # -log(0.75)
    log_loss = build_loss("dice", log=True)(first_logits, first_target)
    # Denominator 0.75^2 + 0.25^2 + 1 = 1.625: D = 1.5 / 1.625, loss = 0.076923.
    squared_loss = build_loss("dice", squared=True)(first_logits, first_target)

    assert log_loss.item() == pytest.approx(0.2876821, abs=1e-6)
    assert squared_loss.item() == pytest.approx(0.0769231, abs=1e-6)


def test_log_dice_finite_on_empty_target():
    loss = build_loss("dice", log=True)(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))

    # D = 0 is clamped to 1e-7: -log(1e-7) = 16.118096.
    assert loss.item() == pytest.approx(16.118096, abs=1e-4)


def test_dice_float16_sums_do_not_overflow():
    # 300 * 300 = 90000 foreground pixels: sum(p) + sum(y) = 180000 > 65504, the float16 maximum.
    logits = torch.full((1, 1, 300, 300), 20.0, dtype=torch.float16)
    target = torch.ones(1, 1, 300, 300, dtype=torch.float16)
    loss = build_loss("dice")(logits, target)

    assert torch.isfinite(loss)
    assert loss.item() < 1e-3


def test_dice_smooth_value():
    logits, target = two_image_batch()
    loss = build_loss("dice", smooth=1.0)(logits[:1], target[:1])

    # D = (1.5 + 1) / (2 + 1) = 5/6
    assert loss.item() == pytest.approx(1 / 6, abs=1e-9)


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_tversky_half_half_equals_dice(per_image, smooth):
    torch.manual_seed(1)
    logits = torch.randn(3, 1, 6, 5, dtype=torch.float64)
    target = (torch.rand(3, 1, 6, 5) > 0.5).double()
    tversky = build_loss("tversky", alpha=0.5, beta=0.5, per_image=per_image, smooth=smooth)
    dice = build_loss("dice", per_image=per_image, smooth=smooth)

    assert torch.allclose(tversky(logits, target), dice(logits, target), rtol=0, atol=1e-12)


def test_tversky_weights_false_negatives():
    logits, target = two_image_batch()
    loss = build_loss("tversky", alpha=0.0, beta=1.0)(logits[1:], target[1:])

    # Image 2: TP = 1, FP = 0, FN = 1: T = 2 / (2 (1 + 1)) = 0.5.
    assert loss.item() == pytest.approx(0.5, abs=1e-9)


# The mixture on lesion-free images.


def test_empty_batch_dice_gradient_zero():
    logits = torch.zeros(2, 1, 2, 2, requires_grad=True)
    target = torch.zeros(2, 1, 2, 2)
    loss = build_loss("dice", smooth=0.0)(logits, target)
    loss.backward()

    assert loss.item() == 1.0
    assert torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize("ce_weight", [0.1, 0.5, 1.0])
def test_empty_batch_mixture_pushes_logits_down(ce_weight):
    logits = torch.zeros(2, 1, 2, 2, requires_grad=True)
    target = torch.zeros(2, 1, 2, 2)
    loss_fn = MixtureLoss(ce=build_loss("ce"), region=build_loss("dice"), ce_weight=ce_weight)
    loss = loss_fn(logits, target)
    loss.backward()

    # Loss: w log 2 + (1 - w) * 1. Gradient per pixel: w * sigmoid(0) / 8 pixels.
    assert loss.item() == pytest.approx(ce_weight * math.log(2) + (1 - ce_weight), abs=1e-6)
    assert torch.all(logits.grad > 0)
    assert torch.allclose(logits.grad, torch.full_like(logits, ce_weight * 0.5 / 8))


def test_mixture_endpoints_equal_pure_losses():
    torch.manual_seed(2)
    logits = torch.randn(2, 1, 4, 4)
    target = (torch.rand(2, 1, 4, 4) > 0.5).float()
    ce, dice = build_loss("ce"), build_loss("dice")
    mixture = MixtureLoss(ce=ce, region=dice, ce_weight=1.0)

    assert torch.equal(mixture(logits, target), ce(logits, target))
    mixture.ce_weight = 0.0
    assert torch.equal(mixture(logits, target), dice(logits, target))


def test_mixture_endpoint_gradient_equals_ce():
    torch.manual_seed(3)
    target = (torch.rand(2, 1, 4, 4) > 0.5).float()
    logits_mixture = torch.randn(2, 1, 4, 4, requires_grad=True)
    logits_ce = logits_mixture.detach().clone().requires_grad_(True)

    mixture = MixtureLoss(build_loss("ce"), build_loss("dice"), ce_weight=1.0)
    mixture(logits_mixture, target).backward()
    build_loss("ce")(logits_ce, target).backward()

    assert torch.equal(logits_mixture.grad, logits_ce.grad)


def test_mixture_sums_over_outputs():
    torch.manual_seed(4)
    first, second = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    target = (torch.rand(2, 1, 3, 3) > 0.5).float()
    loss_fn = MixtureLoss(build_loss("ce"), build_loss("dice"), ce_weight=0.3)
    expected = loss_fn(first, target) + loss_fn(second, target)

    assert torch.allclose(loss_fn((first, second), target), expected)
    assert torch.allclose(loss_fn([first, second], target), expected)


def test_mixture_rejects_invalid_weight():
    loss_fn = MixtureLoss(build_loss("ce"), build_loss("dice"), ce_weight=0.5)

    with pytest.raises(ValueError, match=r"ce_weight must lie in \[0, 1\], got 1.5"):
        loss_fn.ce_weight = 1.5
    with pytest.raises(ValueError, match="ce_weight"):
        MixtureLoss(build_loss("ce"), build_loss("dice"), ce_weight=-0.1)
    with pytest.raises(ValueError, match="empty sequence"):
        loss_fn([], torch.zeros(1, 1, 2, 2))


def test_loss_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        build_loss("dice")(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4))


# Registry.


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_registry_loss_standard_checks(name):
    torch.manual_seed(5)
    target = torch.zeros(2, 1, 4, 4)
    target[:, :, 1:3, 1:3] = 1.0  # every image contains foreground
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss_fn = build_loss(name)

    loss = loss_fn(logits, target)
    loss.backward()
    assert loss.dim() == 0
    assert torch.isfinite(loss)
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()

    if LOSSES[name].near_zero_when_perfect:
        perfect_logits = (target * 2.0 - 1.0) * 20.0
        assert loss_fn(perfect_logits, target).item() < 1e-4


def test_registry_entries_are_frozen():
    entry = LOSSES["ce"]
    with pytest.raises(AttributeError):
        entry.name = "other"


def test_build_loss_unknown_name_lists_valid():
    expected = "unknown loss 'bce'; valid names: ce, dice, focal, tversky"
    with pytest.raises(ValueError, match=expected):
        build_loss("bce")


def test_build_loss_unknown_argument():
    expected = r"unknown arguments \['gamma'\]; accepted arguments: pos_weight"
    with pytest.raises(ValueError, match=expected):
        build_loss("ce", gamma=2.0)


# CE-weight schedules.


@pytest.mark.parametrize(
    "schedule, num_epochs, expected",
    [
        ("linear", 5, [1.0, 0.75, 0.5, 0.25, 0.0]),
        ("linear", 12, [1 - e / 11 for e in range(12)]),
        ("finetune", 5, [1.0, 1.0, 1.0, 1.0, 0.0]),
        ("finetune", 12, [1.0] * 11 + [0.0]),
        ("constant", 5, [0.5] * 5),
    ],
)
def test_schedule_weights(schedule, num_epochs, expected):
    weights = [
        ce_weight_at(schedule, epoch, num_epochs, ce_weight=0.5, finetune_fraction=0.1)
        for epoch in range(num_epochs)
    ]

    assert weights == pytest.approx(expected, abs=1e-12)


def test_schedule_linear_endpoints_exact():
    assert ce_weight_at("linear", 0, 12) == 1.0
    assert ce_weight_at("linear", 11, 12) == 0.0
    assert ce_weight_at("linear", 0, 1) == 1.0


def test_schedule_finetune_rounds_half_up():
    # 0.25 * 10 = 2.5 rounds to 3 final region-loss epochs.
    weights = [ce_weight_at("finetune", e, 10, finetune_fraction=0.25) for e in range(10)]

    assert weights == [1.0] * 7 + [0.0] * 3


def test_schedule_finetune_single_epoch_is_region():
    assert ce_weight_at("finetune", 0, 1, finetune_fraction=0.1) == 0.0


def test_schedule_rejects_invalid_input():
    with pytest.raises(ValueError, match="valid schedules: constant, linear, finetune"):
        ce_weight_at("cosine", 0, 5)
    with pytest.raises(ValueError, match=r"epoch is 0-based and must lie in \[0, 5\), got 5"):
        ce_weight_at("linear", 5, 5)
    with pytest.raises(ValueError, match="num_epochs must be >= 1"):
        ce_weight_at("linear", 0, 0)
    with pytest.raises(ValueError, match="ce_weight"):
        ce_weight_at("constant", 0, 5, ce_weight=2.0)


def test_schedules_constant():
    assert SCHEDULES == ("constant", "linear", "finetune")


@pytest.mark.parametrize(
    "schedule, ce_weight, family",
    [
        ("constant", 1.0, "ce"),
        ("constant", 0.0, "dice"),
        ("constant", 0.5, "mixture"),
        ("linear", 0.5, "schedule"),
        ("finetune", 1.0, "schedule"),
    ],
)
def test_loss_family(schedule, ce_weight, family):
    assert loss_family(schedule=schedule, ce_weight=ce_weight) == family


def test_loss_family_rejects_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        loss_family("step", 0.5)
