"""Augmentation pipelines and the torch dataset over a decoded split.

The arrays in a ``Split`` are already at network size, so evaluation needs no resize: it only
normalises. Training follows the reference recipe: one of scale / shift / rotate, colour
jitter, and horizontal and vertical flips.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from study.data.bundle import Split

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("reference", "flips", "none")


def build_train_transform(kind: str, seed: int) -> A.Compose:
    """Build the training augmentation.

    Args:
        kind: "reference" (affine, colour jitter and flips), "flips" or "none".
        seed: seeds the pipeline's own generator. Albumentations ignores numpy's global seed, so
            without this two runs with the same trial seed would augment differently.
    """
    if kind == "reference":
        steps = [
            A.OneOf(
                [
                    A.Affine(scale=(0.95, 1.20), p=1.0),
                    A.Affine(translate_percent={"x": (-0.05, 0.05), "y": (0.0, 0.0)}, p=1.0),
                    A.Affine(rotate=(-15, 15), p=1.0),
                ],
                p=0.5,
            ),
            A.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.01, p=0.5),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
        ]
    elif kind == "flips":
        steps = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    elif kind == "none":
        steps = []
    else:
        raise ValueError(f"unknown augmentation {kind!r}; expected one of {AUGMENTATIONS}")
    return A.Compose(steps, seed=seed)


class SegmentationDataset(Dataset):
    """Normalised (image, mask) tensors from a decoded split.

    Returns ``image`` as float32 (3, H, W) normalised with ``mean``/``std`` and ``mask`` as
    float32 (1, H, W) in {0, 1}.
    """

    def __init__(
        self,
        split: Split,
        transform: A.Compose | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.split = split
        self.transform = transform
        self.mean = np.asarray(mean, dtype=np.float32) * 255.0
        self.std = np.asarray(std, dtype=np.float32) * 255.0

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = np.asarray(self.split.images[index])
        mask = np.asarray(self.split.masks[index])
        if self.transform is not None:
            augmented = self.transform(image=image, mask=mask)
            image, mask = augmented["image"], augmented["mask"]

        image = (image.astype(np.float32) - self.mean) / self.std
        image_tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        mask_tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
        return image_tensor, mask_tensor
