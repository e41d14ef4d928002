"""Hard Dice/IoU, OoD specificity, AUROC and the reference figures on 2x2 images checked by hand."""

import math

import numpy as np
import pytest
import torch

from study.metrics import (
    DEFAULT_AREA_THRESHOLDS,
    DEFAULT_THRESHOLD,
    METRIC_DEFINITIONS_VERSION,
    auroc,
    evaluate,
    per_image_dice_iou,
    resize_probabilities,
)

TOP_ROW = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
EMPTY = torch.zeros(2, 2)


def stack(*images):
    return torch.stack([torch.as_tensor(image, dtype=torch.float32) for image in images])


def four_image_case():
    """Two ID images with a top-row lesion and two lesion-free OoD images.

    ID 1: predicts the top row exactly (area 2, max 0.9): Dice 1, IoU 1.
    ID 2: predicts one of two lesion pixels (area 1, max 0.6): Dice 2/3, IoU 1/2.
    OoD 1: two false-positive pixels (area 2, max 0.6). OoD 2: nothing predicted (max 0.2).
    """
    id_probs = stack([[0.9, 0.8], [0.1, 0.1]], [[0.6, 0.1], [0.1, 0.1]])
    id_masks = stack(TOP_ROW, TOP_ROW)
    ood_probs = stack([[0.6, 0.55], [0.1, 0.1]], [[0.2, 0.1], [0.1, 0.0]])
    return id_probs, id_masks, ood_probs


# Per-image hard Dice and IoU.


def test_dice_iou_partial_overlap():
    probs = stack([[0.9, 0.7], [0.2, 0.1]])
    masks = stack([[1, 0], [1, 0]])
    dice, iou = per_image_dice_iou(probs, masks)

    # intersection 1, |P| = 2, |G| = 2: Dice 2/4, IoU 1/3
    assert dice.tolist() == pytest.approx([0.5])
    assert iou.tolist() == pytest.approx([1 / 3])


def test_threshold_is_strict():
    probs = stack([[0.5, 0.5], [0.5, 0.51]])
    dice, _ = per_image_dice_iou(probs, stack(TOP_ROW))

    # Only the 0.51 pixel is predicted, and it is background: Dice 0.
    assert dice.tolist() == [0.0]


def test_empty_gt_empty_prediction_undefined():
    dice, iou = per_image_dice_iou(stack(EMPTY), stack(EMPTY))

    assert math.isnan(dice.item())
    assert math.isnan(iou.item())


def test_empty_gt_one_false_positive_scores_zero():
    probs = stack([[0.9, 0.1], [0.1, 0.1]])
    dice, iou = per_image_dice_iou(probs, stack(EMPTY))

    assert dice.tolist() == [0.0]
    assert iou.tolist() == [0.0]


def test_missed_lesion_scores_zero():
    dice, iou = per_image_dice_iou(stack(EMPTY), stack(TOP_ROW))

    assert dice.tolist() == [0.0]
    assert iou.tolist() == [0.0]


def test_channel_dimension_accepted():
    probs = stack([[0.9, 0.7], [0.2, 0.1]])
    masks = stack([[1, 0], [1, 0]])
    dice, _ = per_image_dice_iou(probs[:, None], masks[:, None].bool())

    assert dice.tolist() == pytest.approx([0.5])


def test_per_image_metrics_batch_size_independent():
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(5, 6, 7, generator=generator)
    masks = (torch.rand(5, 6, 7, generator=generator) > 0.5).float()
    dice, iou = per_image_dice_iou(probs, masks)

    for index in range(5):
        window = slice(index, index + 1)
        single_dice, single_iou = per_image_dice_iou(probs[window], masks[window])
        assert single_dice.item() == dice[index].item()
        assert single_iou.item() == iou[index].item()


def test_rejects_logits_and_255_masks():
    with pytest.raises(ValueError, match="apply torch.sigmoid"):
        per_image_dice_iou(stack([[2.0, -1.0], [0.0, 0.0]]), stack(TOP_ROW))
    with pytest.raises(ValueError, match="only 0 and 1"):
        per_image_dice_iou(stack(EMPTY), stack(TOP_ROW * 255))
    with pytest.raises(ValueError, match="resize_probabilities"):
        per_image_dice_iou(torch.zeros(1, 3, 3), stack(TOP_ROW))


# AUROC.


def test_auroc_with_tie():
    # Pairs (positive, negative): 0.9>0.6, 0.9>0.2, 0.6=0.6 (1/2), 0.6>0.2: 3.5 / 4
    assert auroc(np.array([0.9, 0.6, 0.6, 0.2]), np.array([1, 1, 0, 0])) == 0.875


def test_auroc_all_tied_and_one_class():
    assert auroc(np.array([3.0, 3.0, 3.0]), np.array([1, 0, 0])) == 0.5
    assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1])))


# evaluate.


def test_evaluate_four_image_case():
    metrics = evaluate(*four_image_case())

    assert metrics["id_dice"] == pytest.approx(5 / 6)  # mean(1, 2/3)
    assert metrics["id_iou"] == pytest.approx(0.75)  # mean(1, 1/2)
    assert metrics["id_dice_undefined"] == 0.0
    assert metrics["ood_specificity"] == 0.5  # OoD 2 silent, OoD 1 not
    assert metrics["ood_specificity_area0"] == 0.5
    assert metrics["ood_specificity_area10"] == 1.0
    assert metrics["ood_specificity_area100"] == 1.0
    assert metrics["ood_fp_burden"] == pytest.approx(0.25)  # mean(2/4, 0/4)
    # Max probability: positives 0.9, 0.6; negatives 0.6, 0.2: (1 + 1 + 0.5 + 1) / 4
    assert metrics["auroc_max_prob"] == 0.875
    # Area: positives 2, 1; negatives 2, 0: (0.5 + 1 + 0 + 1) / 4
    assert metrics["auroc_area"] == 0.625
    # Reference Dice: mean(1, 2/3, 0, 1); only OoD 2 has an empty prediction.
    assert metrics["reference_dice"] == pytest.approx(2 / 3)
    assert metrics["reference_empty_fraction"] == 0.25


def test_evaluate_key_names():
    metrics = evaluate(*four_image_case(), area_thresholds=(0, 1))

    assert set(metrics) == {
        "id_dice",
        "id_iou",
        "id_dice_undefined",
        "ood_specificity",
        "ood_specificity_area0",
        "ood_specificity_area1",
        "ood_fp_burden",
        "auroc_max_prob",
        "auroc_area",
        "reference_dice",
        "reference_empty_fraction",
    }
    assert all(isinstance(value, float) for value in metrics.values())


def test_evaluate_undefined_id_image_excluded_and_counted():
    id_probs = stack([[0.9, 0.8], [0.1, 0.1]], EMPTY)
    id_masks = stack(TOP_ROW, EMPTY)
    metrics = evaluate(id_probs, id_masks, stack(EMPTY))

    # Dice 1 and NaN: the mean is 1 over the one defined image.
    assert metrics["id_dice"] == 1.0
    assert metrics["id_iou"] == 1.0
    assert metrics["id_dice_undefined"] == 1.0
    # The reference counts a lesion-free image with an empty prediction as Dice 1: mean(1, 1, 1).
    assert metrics["reference_dice"] == 1.0


def test_evaluate_one_false_positive_pixel():
    ood_probs = stack([[0.0, 0.0], [0.0, 0.7]])
    metrics = evaluate(stack(TOP_ROW), stack(TOP_ROW), ood_probs, area_thresholds=(0, 1))

    assert metrics["ood_specificity"] == 0.0
    assert metrics["ood_specificity_area0"] == 0.0
    assert metrics["ood_specificity_area1"] == 1.0
    assert metrics["ood_fp_burden"] == 0.25
    assert evaluate(stack(TOP_ROW), stack(TOP_ROW), ood_probs, min_area=1)["ood_specificity"] == 1.0


def test_evaluate_reference_figures():
    # ID 1 perfect (1), ID 2 missed (0), OoD 1 silent (1), OoD 2 one pixel (0).
    id_probs = stack(TOP_ROW * 0.9, EMPTY)
    ood_probs = stack(EMPTY, [[0.0, 0.0], [0.0, 0.7]])
    metrics = evaluate(id_probs, stack(TOP_ROW, TOP_ROW), ood_probs)

    assert metrics["reference_dice"] == 0.5  # mean(1, 0, 1, 0)
    assert metrics["reference_empty_fraction"] == 0.5  # ID 2 and OoD 1 of 4
    assert metrics["id_dice"] == 0.5


def test_evaluate_list_matches_stack():
    id_probs, id_masks, ood_probs = four_image_case()
    stacked = evaluate(id_probs, id_masks, ood_probs)
    listed = evaluate(list(id_probs), list(id_masks), list(ood_probs))

    assert listed == stacked


def test_evaluate_images_of_different_sizes():
    id_probs = [torch.tensor([[0.9, 0.1, 0.1]]), torch.tensor([[0.9], [0.9]])]
    id_masks = [torch.tensor([[1, 1, 0]]), torch.tensor([[1], [1]])]
    ood_probs = [torch.zeros(3, 3), torch.tensor([[0.8, 0.1]])]
    metrics = evaluate(id_probs, id_masks, ood_probs)

    assert metrics["id_dice"] == pytest.approx((2 / 3 + 1) / 2)
    assert metrics["ood_specificity"] == 0.5
    assert metrics["ood_fp_burden"] == pytest.approx((0 + 1 / 2) / 2)


def test_evaluate_without_ood_images():
    metrics = evaluate(stack(TOP_ROW), stack(TOP_ROW), [])

    assert math.isnan(metrics["ood_specificity"])
    assert math.isnan(metrics["ood_fp_burden"])
    assert math.isnan(metrics["auroc_max_prob"])
    assert metrics["reference_dice"] == 1.0


def test_evaluate_rejects_size_mismatch_and_bad_area():
    with pytest.raises(ValueError, match="resize_probabilities"):
        evaluate([torch.zeros(4, 4)], [torch.zeros(2, 2)], [])
    with pytest.raises(ValueError, match="integers >= 0"):
        evaluate(stack(TOP_ROW), stack(TOP_ROW), [], area_thresholds=(-1,))


# Resizing probabilities back to mask size.


def test_resize_probabilities_shapes_and_range():
    probs = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    resized = resize_probabilities(probs, [(8, 6), (4, 4)])

    assert [tuple(image.shape) for image in resized] == [(8, 6), (4, 4)]
    assert torch.equal(resized[1], probs[1, 0])
    assert resized[0].min() >= 0.0
    assert resized[0].max() <= 1.0


def test_resize_constant_map_stays_constant():
    resized = resize_probabilities(torch.full((1, 3, 3), 0.7), [(5, 9)])

    assert torch.allclose(resized[0], torch.full((5, 9), 0.7))


def test_resize_rejects_wrong_count():
    with pytest.raises(ValueError, match="expected 2 sizes"):
        resize_probabilities(torch.zeros(2, 4, 4), [(4, 4)])


def test_public_constants():
    assert METRIC_DEFINITIONS_VERSION == "1"
    assert DEFAULT_THRESHOLD == 0.5
    assert DEFAULT_AREA_THRESHOLDS == (0, 10, 100)
