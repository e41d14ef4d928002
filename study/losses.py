"""Losses for binary lesion segmentation with one sigmoid output channel.

Every loss takes logits and a target of the same shape (B, 1, H, W), target values in {0, 1}, and
returns a scalar. ``MixtureLoss`` blends a cross-entropy and a region loss with a weight that
``ce_weight_at`` can change from epoch to epoch.

Usage::

    ce = build_loss("ce")
    dice = build_loss("dice", per_image=True)
    loss_fn = MixtureLoss(ce=ce, region=dice, ce_weight=0.5)
    for epoch in range(num_epochs):
        loss_fn.ce_weight = ce_weight_at("linear", epoch, num_epochs)
        loss = loss_fn(logits, target)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Lower bound on the Dice and Tversky denominators, so that an image with an empty target and
# an all-background prediction gives a finite ratio (0 / eps = 0) instead of 0 / 0.
DENOMINATOR_EPS = 1e-7

# Lower bound on the Dice ratio before -log() in the log variants: -log(1e-7) ~ 16.1.
LOG_RATIO_FLOOR = 1e-7

SCHEDULES = ("constant", "linear", "finetune")

LOSS_FAMILIES = ("ce", "dice", "mixture", "schedule")


class LossConfigError(ValueError):
    """Invalid loss name, loss argument or weighting schedule."""


def _check_pair(logits: Tensor, target: Tensor) -> Tensor:
    """Validate shapes and return the target in the logits' dtype."""
    if logits.dim() < 2:
        raise LossConfigError(
            "logits must have a batch dimension, e.g. (B, 1, H, W), got shape "
            f"{tuple(logits.shape)}"
        )
    if logits.shape != target.shape:
        raise LossConfigError(
            f"logits and target must have the same shape, got {tuple(logits.shape)} and "
            f"{tuple(target.shape)}; give the target a channel dimension of size 1"
        )
    return target.to(logits.dtype)


def _check_unit_interval(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise LossConfigError(f"{name} must lie in [0, 1], got {value}")
    return value


class BinaryCrossEntropyLoss(nn.Module):
    """Binary cross-entropy with logits, averaged over every pixel of the batch.

    Args:
        pos_weight: factor on the loss of foreground pixels (> 0), or None for 1.

    Unlike softmax cross-entropy over a single channel (log_softmax of one channel is always 0,
    so that loss is silently zero), this loss is positive on any prediction that is not perfect.
    """

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        if pos_weight is not None and not (math.isfinite(pos_weight) and pos_weight > 0):
            raise LossConfigError(f"pos_weight must be a positive number or None, got {pos_weight}")
        self.pos_weight = None if pos_weight is None else float(pos_weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        target = _check_pair(logits, target)
        pos_weight = None
        if self.pos_weight is not None:
            pos_weight = torch.tensor(self.pos_weight, dtype=logits.dtype, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017) on sigmoid outputs, averaged over every pixel of the batch.

    Per pixel: alpha_t * (1 - p_t)^gamma * BCE, where p_t is the probability given to the true
    class and alpha_t is alpha on foreground and 1 - alpha on background pixels. With gamma = 0
    and alpha = None it equals ``BinaryCrossEntropyLoss()``.

    Args:
        gamma: focusing exponent (>= 0).
        alpha: foreground weight in [0, 1], or None for no class weighting.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        if not (math.isfinite(gamma) and gamma >= 0):
            raise LossConfigError(f"gamma must be a number >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else _check_unit_interval("alpha", alpha)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        target = _check_pair(logits, target)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")

        # p_t = exp(-BCE) is the probability of the true class, computed from the stable BCE.
        p_true = torch.exp(-bce)
        loss = (1.0 - p_true) ** self.gamma * bce
        if self.alpha is not None:
            loss = (self.alpha * target + (1.0 - self.alpha) * (1.0 - target)) * loss
        return loss.mean()


class SoftDiceLoss(nn.Module):
    """Soft Dice loss on the foreground, with p = sigmoid(logits).

    D = (2 sum(p y) + s) / max(sum(p) + sum(y) + s, eps), eps = 1e-7, s = ``smooth``.
    The loss is 1 - D, or -log(max(D, 1e-7)) with ``log=True``.

    Args:
        per_image: True sums over each image and averages the loss over images; False sums over
            the whole batch and returns one ratio (batch Dice).
        smooth: s, added to numerator and denominator (>= 0).
        log: return -log(D) instead of 1 - D.
        squared: use sum(p^2) + sum(y^2) in the denominator.

    With smooth = 0, an image whose target is empty has numerator 0, so D = 0 whatever the
    prediction: its loss is the constant 1 and its gradient is exactly zero. Only the CE term of
    a mixture then pushes predictions on lesion-free images towards background.
    """

    def __init__(
        self, per_image: bool = True, smooth: float = 0.0, log: bool = False, squared: bool = False
    ) -> None:
        super().__init__()
        if not (math.isfinite(smooth) and smooth >= 0):
            raise LossConfigError(f"smooth must be a number >= 0, got {smooth}")
        self.per_image = bool(per_image)
        self.smooth = float(smooth)
        self.log = bool(log)
        self.squared = bool(squared)

    def ratio_terms(
        self, probs: Tensor, target: Tensor, dims: tuple[int, ...]
    ) -> tuple[Tensor, Tensor]:
        """Return (numerator, denominator) of the ratio before smoothing and clamping."""
        intersection = (probs * target).sum(dims)
        if self.squared:
            total = (probs * probs).sum(dims) + (target * target).sum(dims)
        else:
            total = probs.sum(dims) + target.sum(dims)
        return 2.0 * intersection, total

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        # Sums over a 480x640 image exceed the float16 maximum (65504), so the ratio is computed
        # in float32 at least, also under autocast.
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        target = _check_pair(logits, target)
        probs = torch.sigmoid(logits)

        # Per image, the sums run over C, H and W. Batch Dice sums over every dimension.
        dims = tuple(range(1, logits.dim())) if self.per_image else tuple(range(logits.dim()))
        numerator, denominator = self.ratio_terms(probs, target, dims)
        ratio = (numerator + self.smooth) / (denominator + self.smooth).clamp_min(DENOMINATOR_EPS)

        if self.log:
            loss = -torch.log(ratio.clamp_min(LOG_RATIO_FLOOR))
        else:
            loss = 1.0 - ratio
        return loss.mean()


class TverskyLoss(SoftDiceLoss):
    """Tversky loss (Salehi et al., 2017): soft Dice with separate weights on FP and FN.

    T = (2 TP + s) / max(2 (TP + alpha FP + beta FN) + s, eps) with TP = sum(p y),
    FP = sum(p (1 - y)), FN = sum((1 - p) y). The usual index TP / (TP + alpha FP + beta FN) is
    written here with numerator and denominator doubled, so alpha = beta = 0.5 gives
    ``SoftDiceLoss`` exactly, smoothing included. A larger beta penalises missed lesion more.

    Args:
        alpha: weight on false positives (>= 0).
        beta: weight on false negatives (>= 0).
        per_image, smooth, log: as in ``SoftDiceLoss``.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        per_image: bool = True,
        smooth: float = 0.0,
        log: bool = False,
    ) -> None:
        super().__init__(per_image=per_image, smooth=smooth, log=log, squared=False)
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not (math.isfinite(value) and value >= 0):
                raise LossConfigError(f"{name} must be a number >= 0, got {value}")
        self.alpha = float(alpha)
        self.beta = float(beta)

    def ratio_terms(
        self, probs: Tensor, target: Tensor, dims: tuple[int, ...]
    ) -> tuple[Tensor, Tensor]:
        true_pos = (probs * target).sum(dims)
        false_pos = probs.sum(dims) - true_pos
        false_neg = target.sum(dims) - true_pos
        return 2.0 * true_pos, 2.0 * (true_pos + self.alpha * false_pos + self.beta * false_neg)


@dataclass(frozen=True)
class LossEntry:
    """One loss the study can build by name.

    Attributes:
        name: registry key.
        builder: class or function taking the loss's keyword arguments.
        description: one line for listings and reports.
        near_zero_when_perfect: True if the loss tends to 0 when the logits have large magnitude
            and the sign of the target, given that every image of the target contains foreground.
    """

    name: str
    builder: Callable[..., nn.Module]
    description: str
    near_zero_when_perfect: bool


LOSSES: dict[str, LossEntry] = {
    entry.name: entry
    for entry in (
        LossEntry("ce", BinaryCrossEntropyLoss, "binary cross-entropy with logits", True),
        LossEntry("dice", SoftDiceLoss, "soft Dice on the foreground, per image or batch", True),
        LossEntry("focal", FocalLoss, "focal loss on sigmoid outputs, pixel mean", True),
        LossEntry("tversky", TverskyLoss, "Tversky loss, soft Dice with FP/FN weights", True),
    )
}


def build_loss(name: str, **kwargs: object) -> nn.Module:
    """Build the registered loss ``name`` with keyword arguments ``kwargs``.

    Raises:
        LossConfigError: ``name`` is not registered, or a keyword is not accepted by that loss.
    """
    if name not in LOSSES:
        raise LossConfigError(f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}")
    builder = LOSSES[name].builder

    signature = inspect.signature(builder)
    unknown = sorted(set(kwargs) - set(signature.parameters))
    if unknown:
        accepted = ", ".join(signature.parameters) or "none"
        raise LossConfigError(
            f"loss {name!r} got unknown arguments {unknown}; accepted arguments: {accepted}"
        )
    return builder(**kwargs)


class MixtureLoss(nn.Module):
    """ce_weight * CE + (1 - ce_weight) * region, summed over the outputs of a network.

    Both terms are always computed, so ce_weight = 1 returns exactly the CE loss and
    ce_weight = 0 exactly the region loss (the other term is multiplied by 0.0).

    Args:
        ce: a cross-entropy-like loss module.
        region: a region loss module (soft Dice, Tversky).
        ce_weight: weight on ``ce`` in [0, 1]; may be reassigned between epochs.

    Shape:
        outputs: logits (B, 1, H, W), or a tuple or list of such tensors (deep supervision or a
        cascade). Each output is compared with the same target, and the losses are summed.
        target: (B, 1, H, W) with values in {0, 1}.
    """

    def __init__(self, ce: nn.Module, region: nn.Module, ce_weight: float = 0.5) -> None:
        super().__init__()
        self.ce = ce
        self.region = region
        self.ce_weight = ce_weight

    @property
    def ce_weight(self) -> float:
        return self._ce_weight

    @ce_weight.setter
    def ce_weight(self, value: float) -> None:
        self._ce_weight = _check_unit_interval("ce_weight", value)

    def forward(self, outputs: Tensor | Sequence[Tensor], target: Tensor) -> Tensor:
        if isinstance(outputs, Tensor):
            outputs = (outputs,)
        if len(outputs) == 0:
            raise LossConfigError("outputs is an empty sequence; pass at least one logits tensor")

        # NOTE: every output must have the target's shape. Deep-supervision heads at a lower
        # resolution would need downsampled targets, which this class does not build.
        total = None
        for logits in outputs:
            loss = self.ce_weight * self.ce(logits, target) + (1.0 - self.ce_weight) * self.region(
                logits, target
            )
            total = loss if total is None else total + loss
        return total


def _finetune_epochs(num_epochs: int, finetune_fraction: float) -> int:
    """Number of final epochs trained on the region loss alone: max(1, floor(f * E + 0.5))."""
    return min(num_epochs, max(1, math.floor(finetune_fraction * num_epochs + 0.5)))


def ce_weight_at(
    schedule: str,
    epoch: int,
    num_epochs: int,
    ce_weight: float = 0.5,
    finetune_fraction: float = 0.1,
) -> float:
    """Return the CE weight of a mixture at 0-based ``epoch`` of ``num_epochs``.

    Schedules:
        constant: ``ce_weight`` at every epoch.
        linear: 1 - epoch / (num_epochs - 1), so from 1 (pure CE) at the first epoch to 0 (pure
            region loss) at the last; 1.0 when num_epochs == 1.
        finetune: 1.0 except for the last n epochs, which get 0.0, with
            n = max(1, floor(finetune_fraction * num_epochs + 0.5)) (rounded half up, at most
            num_epochs). For 12 epochs and a fraction of 0.1 only the last epoch is 0.0.

    ``ce_weight`` is used by "constant" only and ``finetune_fraction`` by "finetune" only.

    Raises:
        LossConfigError: unknown schedule, epoch outside [0, num_epochs), num_epochs < 1, or a
            weight or fraction outside [0, 1].
    """
    if schedule not in SCHEDULES:
        raise LossConfigError(
            f"unknown schedule {schedule!r}; valid schedules: {', '.join(SCHEDULES)}"
        )
    if num_epochs < 1:
        raise LossConfigError(f"num_epochs must be >= 1, got {num_epochs}")
    if not 0 <= epoch < num_epochs:
        raise LossConfigError(f"epoch is 0-based and must lie in [0, {num_epochs}), got {epoch}")

    if schedule == "constant":
        return _check_unit_interval("ce_weight", ce_weight)
    if schedule == "linear":
        if num_epochs == 1:
            return 1.0
        return 1.0 - epoch / (num_epochs - 1)
    finetune_fraction = _check_unit_interval("finetune_fraction", finetune_fraction)
    first_region_epoch = num_epochs - _finetune_epochs(num_epochs, finetune_fraction)
    return 1.0 if epoch < first_region_epoch else 0.0


def loss_family(schedule: str, ce_weight: float) -> str:
    """Name the loss setting: "ce", "dice", "mixture" (constant schedules) or "schedule".

    "ce" and "dice" mean a constant ce_weight of exactly 1 and 0. ``ce_weight`` is ignored for
    the "linear" and "finetune" schedules.
    """
    if schedule not in SCHEDULES:
        raise LossConfigError(
            f"unknown schedule {schedule!r}; valid schedules: {', '.join(SCHEDULES)}"
        )
    if schedule != "constant":
        return "schedule"

    ce_weight = _check_unit_interval("ce_weight", ce_weight)
    if ce_weight == 1.0:
        return "ce"
    if ce_weight == 0.0:
        return "dice"
    return "mixture"
