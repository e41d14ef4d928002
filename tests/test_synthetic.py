"""The embedded synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest

from study.data import load_data
from study.data.synthetic import SyntheticConfig, make_synthetic_bundle

SMALL = dict(image_size=32, num_train=6, num_id_val=3, num_id_test=3, num_ood_val=4, num_ood_test=4)


def test_same_seed_same_images():
    first = make_synthetic_bundle(SyntheticConfig(seed=3, **SMALL))
    second = make_synthetic_bundle(SyntheticConfig(seed=3, **SMALL))

    for name, split in first.splits.items():
        assert np.array_equal(split.images, second.splits[name].images)
        assert np.array_equal(split.masks, second.splits[name].masks)
    assert first.content_hash == second.content_hash


def test_other_seed_other_images():
    first = make_synthetic_bundle(SyntheticConfig(seed=0, **SMALL))
    second = make_synthetic_bundle(SyntheticConfig(seed=1, **SMALL))

    assert not np.array_equal(first.splits["train"].images, second.splits["train"].images)
    assert first.content_hash != second.content_hash


def test_split_contents():
    bundle = make_synthetic_bundle(SyntheticConfig(**SMALL))

    assert bundle.summary() == {"train": 6, "id_val": 3, "id_test": 3, "ood_val": 4, "ood_test": 4}
    for name in ("train", "id_val", "id_test"):
        masks = bundle.splits[name].masks
        assert set(np.unique(masks)) == {0, 1}
        assert masks.any(axis=(1, 2)).all()
    for name in ("ood_val", "ood_test"):
        assert not bundle.splits[name].masks.any()
    assert bundle.splits["train"].images.shape == (6, 32, 32, 3)


def test_distractors_change_lesion_free_images():
    bundle = make_synthetic_bundle(SyntheticConfig(**SMALL))

    # A distractor blends a reddish blob into the tissue: the red/green ratio varies more than
    # on plain tissue.
    images = bundle.splits["ood_val"].images.astype(float)
    ratio = images[..., 0] / (images[..., 1] + 1)
    assert ratio.std(axis=(1, 2)).min() > 0.02


def test_load_data_default_is_synthetic():
    bundle = load_data(None, image_size=32)

    assert bundle.description.startswith("synthetic")
    assert bundle.splits["train"].images.shape[1:] == (32, 32, 3)


def test_invalid_config_rejected():
    with pytest.raises(ValueError, match="image_size must be at least 16"):
        SyntheticConfig(image_size=8)
    with pytest.raises(ValueError, match="at least one image"):
        SyntheticConfig(num_ood_val=0)
