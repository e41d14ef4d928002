"""In-memory splits shared by every trial of a study.

A study decodes and resizes its images once (in the driver) into uint8 arrays; Ray's object
store then hands the same arrays to every trial on a node without copying them again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

# Split names used by the training loop and the reports. The searcher reads only the
# validation splits. The test splits are reported, never used to select anything.
ID_SPLITS = ("train", "id_val", "id_test")
OOD_SPLITS = ("ood_val", "ood_test")
SPLITS = ID_SPLITS + OOD_SPLITS


@dataclass
class Split:
    """One split at network resolution.

    Attributes:
        images: uint8 array of shape (N, H, W, 3), RGB.
        masks: uint8 array of shape (N, H, W) with values in {0, 1}; all zero for lesion-free
            splits.
        names: one identifier per image (a file path relative to its source, or a synthetic id).
        original_masks: for evaluation splits whose masks were resized, the masks at their
            original size (a list of (h, w) uint8 arrays); None when they equal ``masks``.
    """

    images: np.ndarray
    masks: np.ndarray
    names: list[str]
    original_masks: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be a uint8 array of shape (N, H, W, 3), got {self.images.dtype} "
                f"{self.images.shape}"
            )
        if self.masks.shape != self.images.shape[:3] or self.masks.dtype != np.uint8:
            raise ValueError(
                f"masks must be a uint8 array of shape {self.images.shape[:3]}, got "
                f"{self.masks.dtype} {self.masks.shape}"
            )
        if len(self.names) != len(self.images):
            raise ValueError(f"expected {len(self.images)} names, got {len(self.names)}")
        if self.original_masks is not None and len(self.original_masks) != len(self.images):
            raise ValueError(
                f"expected {len(self.images)} original masks, got {len(self.original_masks)}"
            )

    def __len__(self) -> int:
        return len(self.images)

    def membership_hash(self) -> str:
        """Return a SHA-256 over the split's image names, in order."""
        digest = hashlib.sha256()
        for name in self.names:
            digest.update(name.encode("utf-8") + b"\0")
        return digest.hexdigest()


@dataclass
class DataBundle:
    """All splits of one dataset at one image size, plus what describes them.

    Attributes:
        splits: the five splits named in ``SPLITS``.
        description: a short human-readable origin, e.g. "synthetic(seed=0)" or a config path.
        content_hash: a hash of the file list, sizes and split membership (or of the synthetic
            generator's parameters); recorded with every trial so a rerun can check its data.
        warnings: problems found while loading that did not stop the study.
    """

    splits: dict[str, Split]
    description: str
    content_hash: str
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        missing = [name for name in SPLITS if name not in self.splits]
        if missing:
            raise ValueError(f"data bundle is missing splits {missing}; expected all of {SPLITS}")
        for name in ID_SPLITS:
            empty = int((~self.splits[name].masks.any(axis=(1, 2))).sum())
            if empty:
                raise ValueError(
                    f"split {name!r} has {empty} images with an empty mask; in-distribution "
                    "splits must contain a lesion in every image (move lesion-free images to "
                    "the lesion-free sources)"
                )
        for name in OOD_SPLITS:
            if self.splits[name].masks.any():
                raise ValueError(f"lesion-free split {name!r} has non-zero mask pixels")

    def summary(self) -> dict[str, int]:
        """Return the number of images per split."""
        return {name: len(split) for name, split in self.splits.items()}
