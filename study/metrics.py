"""Per-image segmentation metrics and image-level scores on lesion-free images.

A pixel is predicted as lesion when its probability is strictly greater than the threshold
(default 0.5, the same rule as sigmoid(logit) > 0.5). Masks contain 0 (background) and 1 (lesion).

Empty cases of the per-image hard Dice and IoU:

    ground truth   prediction    Dice, IoU
    non-empty      any           the usual ratios (0 when the prediction is empty)
    empty          non-empty     0
    empty          empty         NaN: undefined, left out of the means and counted

See docs/metrics.md for every formula.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# Bump when the definition of any key returned by ``evaluate`` changes, so that stored results
# computed with different definitions are never compared.
METRIC_DEFINITIONS_VERSION = "1"

DEFAULT_THRESHOLD = 0.5
DEFAULT_AREA_THRESHOLDS = (0, 10, 100)

# Either a stacked (N, H, W) / (N, 1, H, W) tensor, or one (h, w) tensor per image.
ImageBatch = Tensor | Sequence[Tensor]


class MetricInputError(ValueError):
    """Invalid probabilities, masks or metric settings."""


def _as_image_stack(values: Tensor, name: str) -> Tensor:
    """Return ``values`` as (N, H, W), dropping a channel dimension of size 1."""
    if values.dim() == 4 and values.shape[1] == 1:
        return values[:, 0]
    if values.dim() == 3:
        return values
    raise MetricInputError(
        f"{name} must have shape (N, H, W) or (N, 1, H, W), got {tuple(values.shape)}"
    )


def _check_probabilities(probs: Tensor, name: str) -> None:
    if probs.numel() == 0:
        return
    if torch.isnan(probs).any() or probs.min() < 0 or probs.max() > 1:
        raise MetricInputError(
            f"{name} must be probabilities in [0, 1] without NaN, got values in "
            f"[{probs.min().item():.4g}, {probs.max().item():.4g}]; apply torch.sigmoid to logits"
        )


def _binary_mask(masks: Tensor, name: str) -> Tensor:
    """Return ``masks`` as bool, raising unless every value is 0 or 1."""
    if masks.dtype == torch.bool:
        return masks
    if not ((masks == 0) | (masks == 1)).all():
        raise MetricInputError(
            f"{name} must contain only 0 and 1, got values in [{masks.min().item()}, "
            f"{masks.max().item()}]; divide 0/255 masks by 255"
        )
    return masks != 0


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise MetricInputError(f"threshold must lie in [0, 1], got {threshold}")
    return threshold


def _overlap_counts(
    probs: Tensor, masks: Tensor, threshold: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Return per-image (intersection, predicted area, ground-truth area) as int64, shape (N,)."""
    predicted = probs > threshold
    intersection = (predicted & masks).sum(dim=(1, 2))
    return intersection, predicted.sum(dim=(1, 2)), masks.sum(dim=(1, 2))


def _dice_iou_from_counts(
    intersection: Tensor, predicted_area: Tensor, true_area: Tensor
) -> tuple[Tensor, Tensor]:
    """Return float64 hard Dice and IoU, NaN where both areas are 0."""
    intersection = intersection.double()
    area_sum = (predicted_area + true_area).double()
    union = area_sum - intersection

    # Both empty: 0 / 0 gives NaN, the intended "undefined".
    dice = 2.0 * intersection / area_sum
    iou = intersection / union
    return dice, iou


def per_image_dice_iou(
    probs: Tensor, masks: Tensor, threshold: float = DEFAULT_THRESHOLD
) -> tuple[Tensor, Tensor]:
    """Compute the hard Dice and IoU of each image.

    Args:
        probs: probabilities, (N, H, W) or (N, 1, H, W).
        masks: ground truth with values in {0, 1} (bool, integer or float), same shape as probs.
        threshold: a pixel is predicted as lesion when its probability is > threshold.

    Returns:
        (dice, iou), float64 tensors of shape (N,). An image with an empty ground truth scores
        0 if anything is predicted and NaN if nothing is.
    """
    threshold = _check_threshold(threshold)
    probs = _as_image_stack(probs, "probs")
    masks = _as_image_stack(masks, "masks")
    if probs.shape != masks.shape:
        raise MetricInputError(
            f"probs and masks must have the same shape, got {tuple(probs.shape)} and "
            f"{tuple(masks.shape)}; use resize_probabilities to bring probabilities to mask size"
        )
    _check_probabilities(probs, "probs")
    return _dice_iou_from_counts(*_overlap_counts(probs, _binary_mask(masks, "masks"), threshold))


def resize_probabilities(probs: Tensor, sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
    """Resize each probability map bilinearly to its image's original (h, w).

    Metrics are computed at the original mask resolution, so probabilities are resized back to
    the mask size and masks are never resized. Bilinear interpolation (align_corners=False)
    forms convex combinations, so the results stay in [0, 1].

    Args:
        probs: (N, 1, H, W) or (N, H, W) probabilities at network resolution.
        sizes: N pairs (h, w).

    Returns:
        N tensors of shape (h, w), in the dtype and on the device of ``probs``.
    """
    probs = _as_image_stack(probs, "probs")
    if len(sizes) != probs.shape[0]:
        raise MetricInputError(f"expected {probs.shape[0]} sizes, one per image, got {len(sizes)}")

    resized = []
    for index, (prob, size) in enumerate(zip(probs, sizes)):
        height, width = (int(extent) for extent in size)
        if height < 1 or width < 1:
            raise MetricInputError(
                f"size of image {index} must be a positive (h, w), got {tuple(size)}"
            )
        if prob.shape == (height, width):
            resized.append(prob)
            continue
        image = prob[None, None].float()
        image = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False)
        resized.append(image[0, 0].to(prob.dtype))
    return resized


def _group_images(
    probs: ImageBatch, masks: ImageBatch | None, name: str
) -> list[tuple[Tensor, Tensor | None]]:
    """Pair probabilities with masks as (n, h, w) groups that share one size.

    A stacked batch becomes one group. A list becomes one group per image, because the sizes
    may differ.
    """
    if isinstance(probs, Tensor):
        prob_list: Sequence[Tensor] = _as_image_stack(probs, name)
    else:
        prob_list = list(probs)
    if masks is None:
        mask_list: Sequence[Tensor | None] = [None] * len(prob_list)
    elif isinstance(masks, Tensor):
        mask_list = _as_image_stack(masks, f"{name} masks")
    else:
        mask_list = list(masks)
    if len(mask_list) != len(prob_list):
        raise MetricInputError(
            f"{name}: got {len(prob_list)} probability maps but {len(mask_list)} masks; "
            "pass one mask per image"
        )

    if isinstance(prob_list, Tensor) and (masks is None or isinstance(mask_list, Tensor)):
        return [(prob_list, None if masks is None else mask_list)]
    return [
        (prob[None], None if mask is None else mask[None])
        for prob, mask in zip(prob_list, mask_list)
    ]


def _image_statistics(
    probs: ImageBatch, masks: ImageBatch | None, threshold: float, name: str
) -> dict[str, Tensor]:
    """Compute per-image statistics as 1-D tensors on the CPU.

    Keys: "intersection", "predicted_area", "true_area", "num_pixels" (int64) and "max_prob"
    (float64). Without masks, every image counts as lesion-free.
    """
    parts: dict[str, list[Tensor]] = {
        key: [] for key in ("intersection", "predicted_area", "true_area", "num_pixels", "max_prob")
    }
    for prob, mask in _group_images(probs, masks, name):
        if prob.dim() != 3 or prob.shape[1] == 0 or prob.shape[2] == 0:
            raise MetricInputError(
                f"{name}: each image must be a non-empty (h, w) map, got shape "
                f"{tuple(prob.shape[1:])}"
            )
        _check_probabilities(prob, name)
        if mask is None:
            mask = torch.zeros(prob.shape, dtype=torch.bool, device=prob.device)
        elif mask.shape != prob.shape:
            raise MetricInputError(
                f"{name}: probabilities {tuple(prob.shape[1:])} and mask {tuple(mask.shape[1:])} "
                "differ in size; use resize_probabilities to bring probabilities to the mask size"
            )
        intersection, predicted_area, true_area = _overlap_counts(
            prob, _binary_mask(mask.to(prob.device), f"{name} masks"), threshold
        )
        parts["intersection"].append(intersection.cpu())
        parts["predicted_area"].append(predicted_area.cpu())
        parts["true_area"].append(true_area.cpu())
        parts["num_pixels"].append(torch.full((prob.shape[0],), prob.shape[1] * prob.shape[2]))
        if prob.shape[0] > 0:
            parts["max_prob"].append(prob.flatten(1).amax(dim=1).double().cpu())

    statistics = {}
    for key, values in parts.items():
        dtype = torch.float64 if key == "max_prob" else torch.int64
        statistics[key] = torch.cat(values) if values else torch.zeros(0, dtype=dtype)
    return statistics


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Compute the area under the ROC curve as the Mann-Whitney U statistic, ties counted 1/2.

    Computed from average ranks in NumPy (a few lines, and no extra dependency on the evaluation
    path). Returns NaN when either class is absent.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    num_pos = int(labels.sum())
    num_neg = labels.size - num_pos
    if num_pos == 0 or num_neg == 0:
        return math.nan

    # Average 1-based rank of each distinct score: tied scores share the mean of their ranks.
    unique_scores, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse]

    u_statistic = ranks[labels].sum() - num_pos * (num_pos + 1) / 2.0
    return float(u_statistic / (num_pos * num_neg))


def _mean_or_nan(values: Tensor) -> float:
    return float(values.double().mean()) if values.numel() else math.nan


def evaluate(
    id_probs: ImageBatch,
    id_masks: ImageBatch,
    ood_probs: ImageBatch,
    threshold: float = DEFAULT_THRESHOLD,
    min_area: int = 0,
    area_thresholds: Sequence[int] = DEFAULT_AREA_THRESHOLDS,
) -> dict[str, float]:
    """Compute the study's metrics on ID images (with masks) and lesion-free OoD images.

    Metrics are computed at the resolution of the masks given. When the network input size
    differs from the original mask size, callers pass probabilities resized back to the original
    mask size (see ``resize_probabilities``).

    Args:
        id_probs: ID probabilities, a stacked (N, H, W) / (N, 1, H, W) tensor or a list of
            (h, w) tensors.
        id_masks: ID masks in {0, 1}, in the same layout and sizes as ``id_probs``.
        ood_probs: OoD probabilities, stacked or a list (may be empty).
        threshold: a pixel is predicted as lesion when its probability is > threshold.
        min_area: an OoD image counts as silent when at most this many pixels are predicted.
        area_thresholds: further values of min_area, one key each.

    Returns:
        id_dice, id_iou: mean per-image hard Dice and IoU over ID images where defined (NaN if
            none is defined).
        id_dice_undefined: number of ID images with empty ground truth and empty prediction.
        ood_specificity: fraction of OoD images with at most ``min_area`` predicted pixels.
        ood_specificity_area{k}: the same with k pixels, for each k in ``area_thresholds``.
        ood_fp_burden: mean over OoD images of the fraction of pixels predicted as lesion.
        auroc_max_prob, auroc_area: AUROC of "the image contains a lesion", scored by the
            image's maximum probability and by its predicted area. Positives are ID images whose
            mask is non-empty, negatives are OoD images and ID images with an empty mask.
        reference_dice: mean over ID and OoD images of the hard Dice, where an image with an
            empty ground truth scores 1 if nothing is predicted and 0 otherwise.
        reference_empty_fraction: fraction of ID and OoD images with no predicted pixel.

    With no OoD images, the ood_* keys are NaN, both AUROCs are NaN unless some ID mask is
    empty, and the reference_* keys cover the ID images alone.
    """
    threshold = _check_threshold(threshold)
    for area in (min_area, *area_thresholds):
        if isinstance(area, bool) or not isinstance(area, numbers.Integral) or area < 0:
            raise MetricInputError(
                f"min_area and area_thresholds must be integers >= 0, got {area!r}"
            )
    min_area = int(min_area)
    area_thresholds = tuple(int(area) for area in area_thresholds)

    id_stats = _image_statistics(id_probs, id_masks, threshold, "id_probs")
    ood_stats = _image_statistics(ood_probs, None, threshold, "ood_probs")
    metrics: dict[str, float] = {}

    # In-distribution overlap: undefined images are counted, then left out of the means.
    id_dice, id_iou = _dice_iou_from_counts(
        id_stats["intersection"], id_stats["predicted_area"], id_stats["true_area"]
    )
    defined = ~torch.isnan(id_dice)
    metrics["id_dice"] = _mean_or_nan(id_dice[defined])
    metrics["id_iou"] = _mean_or_nan(id_iou[defined])
    metrics["id_dice_undefined"] = float((~defined).sum())

    # Lesion-free images: silence at each area threshold and the fraction of false-positive pixels.
    ood_area = ood_stats["predicted_area"]
    metrics["ood_specificity"] = _mean_or_nan(ood_area <= min_area)
    for area in area_thresholds:
        metrics[f"ood_specificity_area{area}"] = _mean_or_nan(ood_area <= area)
    metrics["ood_fp_burden"] = _mean_or_nan(ood_area.double() / ood_stats["num_pixels"].double())

    # Image-level detection of lesions.
    labels = torch.cat([id_stats["true_area"] > 0, torch.zeros_like(ood_area, dtype=torch.bool)])
    max_prob = torch.cat([id_stats["max_prob"], ood_stats["max_prob"]])
    predicted_area = torch.cat([id_stats["predicted_area"], ood_area])
    metrics["auroc_max_prob"] = auroc(max_prob.numpy(), labels.numpy())
    metrics["auroc_area"] = auroc(predicted_area.numpy(), labels.numpy())

    # The reference protocol's figures over all images: empty/empty scores 1 instead of NaN.
    reference_scores = torch.cat([id_dice, (ood_area == 0).double()])
    reference_scores = torch.where(torch.isnan(reference_scores), 1.0, reference_scores)
    metrics["reference_dice"] = _mean_or_nan(reference_scores)
    metrics["reference_empty_fraction"] = _mean_or_nan(predicted_area == 0)
    return metrics
