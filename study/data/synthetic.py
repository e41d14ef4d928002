"""The embedded default dataset: procedural lesions on textured tissue.

Every image has a smooth, textured background in a tissue colour. In-distribution images carry
one or two lesions: irregular blobs with their own colour and a finer texture. Every image may
also carry distractors: blobs with a lesion-like shape and a colour half-way between tissue and
lesion, which are never labelled. Lesion-free (OoD) images carry more distractors than the
training images do, so a model that paints every reddish blob as lesion loses specificity.

Generation is deterministic given the seed and takes well under a second per hundred images at
64 px, so nothing is cached on disk.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from study.data.bundle import DataBundle, Split

TISSUE_RGB = np.array([0.78, 0.52, 0.45])
LESION_RGB = np.array([0.55, 0.18, 0.20])


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and make-up of the synthetic dataset.

    Attributes:
        image_size: side of the square images in pixels.
        seed: generator seed; the same seed gives the same images.
        num_train, num_id_val, num_id_test: in-distribution images (each has a lesion).
        num_ood_val, num_ood_test: lesion-free images (each has at least one distractor).
        distractor_probability: chance that an in-distribution image also has a distractor.
        distractor_mix: how far a distractor's colour moves from tissue towards lesion (0-1).
    """

    image_size: int = 64
    seed: int = 0
    num_train: int = 192
    num_id_val: int = 48
    num_id_test: int = 48
    num_ood_val: int = 48
    num_ood_test: int = 48
    distractor_probability: float = 0.3
    distractor_mix: float = 0.55

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"synthetic image_size must be at least 16 pixels, got {self.image_size}")
        counts = (self.num_train, self.num_id_val, self.num_id_test, self.num_ood_val, self.num_ood_test)
        if min(counts) < 1:
            raise ValueError(f"every synthetic split needs at least one image, got counts {counts}")


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Return zero-mean, unit-std noise of shape (size, size) with features about `scale` px wide."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=scale, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def _blob(rng: np.random.Generator, size: int, radius: float) -> np.ndarray:
    """Return a boolean mask of one irregular blob: a circle whose radius wobbles with angle."""
    centre = rng.uniform(radius + 2, size - radius - 2, size=2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = np.arctan2(yy - centre[0], xx - centre[1])
    distance = np.hypot(yy - centre[0], xx - centre[1])

    # A few low-frequency harmonics make the outline irregular but keep the blob in one piece.
    wobble = np.zeros_like(angle)
    for harmonic in range(2, 6):
        wobble += rng.uniform(0.0, 0.12) * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    return distance < radius * (1.0 + wobble)


def _render(
    rng: np.random.Generator, size: int, num_lesions: int, num_distractors: int, mix: float
) -> tuple[np.ndarray, np.ndarray]:
    """Render one (image, mask) pair: uint8 (size, size, 3) and uint8 (size, size) in {0, 1}."""
    shade = 1.0 + 0.12 * _smooth_noise(rng, size, scale=size / 8)
    grain = 0.04 * _smooth_noise(rng, size, scale=1.0)
    tint = TISSUE_RGB * rng.uniform(0.9, 1.1, size=3)
    image = tint[None, None, :] * shade[..., None] + grain[..., None]
    mask = np.zeros((size, size), dtype=bool)

    # Distractors first, so a lesion drawn later covers any overlap and the mask stays exact.
    for _ in range(num_distractors):
        region = _blob(rng, size, radius=rng.uniform(0.08, 0.2) * size)
        colour = (1 - mix) * tint + mix * LESION_RGB * rng.uniform(0.9, 1.1, size=3)
        image[region] = 0.5 * image[region] + 0.5 * colour

    for _ in range(num_lesions):
        region = _blob(rng, size, radius=rng.uniform(0.1, 0.25) * size)
        texture = 1.0 + 0.15 * _smooth_noise(rng, size, scale=1.5)
        colour = LESION_RGB * rng.uniform(0.85, 1.15, size=3)
        image[region] = colour[None, :] * texture[region][:, None]
        mask |= region

    image = np.clip(ndimage.gaussian_filter(image, sigma=(0.6, 0.6, 0)), 0.0, 1.0)
    return (image * 255).round().astype(np.uint8), mask.astype(np.uint8)


def _make_split(
    config: SyntheticConfig, rng: np.random.Generator, prefix: str, count: int, lesion: bool
) -> Split:
    images, masks = [], []
    for _ in range(count):
        if lesion:
            num_lesions = 1 + int(rng.random() < 0.3)
            num_distractors = int(rng.random() < config.distractor_probability)
        else:
            num_lesions, num_distractors = 0, 1 + int(rng.integers(0, 3))
        image, mask = _render(rng, config.image_size, num_lesions, num_distractors, config.distractor_mix)
        images.append(image)
        masks.append(mask)
    names = [f"{prefix}/{index:04d}" for index in range(count)]
    return Split(images=np.stack(images), masks=np.stack(masks), names=names)


def make_synthetic_bundle(config: SyntheticConfig) -> DataBundle:
    """Generate every split of the synthetic dataset.

    Each split draws from its own child generator, so changing one split's size leaves the
    images of the other splits unchanged.
    """
    plan = {
        "train": (config.num_train, True),
        "id_val": (config.num_id_val, True),
        "id_test": (config.num_id_test, True),
        "ood_val": (config.num_ood_val, False),
        "ood_test": (config.num_ood_test, False),
    }
    children = np.random.SeedSequence(config.seed).spawn(len(plan))
    splits = {
        name: _make_split(config, np.random.default_rng(child), name, count, lesion)
        for (name, (count, lesion)), child in zip(plan.items(), children)
    }
    recipe = json.dumps({"generator": "synthetic-v1", **asdict(config)}, sort_keys=True)
    return DataBundle(
        splits=splits,
        description=f"synthetic(seed={config.seed}, size={config.image_size})",
        content_hash=hashlib.sha256(recipe.encode("utf-8")).hexdigest(),
    )
