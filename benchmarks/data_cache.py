"""Images per second: decoding every epoch versus loading the decode-once cache.

Usage:
    LESION_STUDY_DATA=/path/to/data python benchmarks/data_cache.py [--epochs 3] [--image-size 128]

Both paths feed every Kvasir-SEG pair (all in-distribution splits of the kvasir_seg preset) through
the same albumentations training augmentation (flips and colour jitter), one image at a time in one
process, as a single DataLoader worker would:

    decode   read and resize each JPEG image and PNG mask with study.data.readers, every epoch
    cache    load the decoded uint8 arrays from the cache (memory-mapped .npy) at each epoch

The cache is built once into a temporary folder before the timed epochs; that one-off cost is
printed too. Files are read once before timing, so both paths read from the OS page cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import study  # noqa: F401  (first, so albumentations skips its online version check)
import albumentations as A
from study.data.bundle import ID_SPLITS
from study.data.cache import load_cached_bundle
from study.data.check import plan_dataset
from study.data.config import build_bundle, load_dataset_config
from study.data.readers import read_image, read_mask, resize_mask


def build_augmentation(seed: int) -> A.Compose:
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.01, p=1.0),
        ],
        seed=seed,
    )


def run_decode_epochs(samples: list, size: tuple[int, int], rule, epochs: int, augment: A.Compose) -> float:
    started = time.perf_counter()
    for _ in range(epochs):
        for sample in samples:
            image, _ = read_image(sample.image, size)
            mask = resize_mask(read_mask(sample.mask, rule), size)
            augment(image=image, mask=mask)
    return epochs * len(samples) / (time.perf_counter() - started)


def run_cache_epochs(cache_dir: Path, key: str, epochs: int, augment: A.Compose) -> float:
    started = time.perf_counter()
    count = 0
    for _ in range(epochs):
        bundle = load_cached_bundle(cache_dir, key)
        for split in ID_SPLITS:
            images, masks = bundle.splits[split].images, bundle.splits[split].masks
            for index in range(len(images)):
                augment(image=np.asarray(images[index]), mask=np.asarray(masks[index]))
                count += 1
    return count / (time.perf_counter() - started)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed passes over the data")
    parser.add_argument("--image-size", type=int, default=128, help="network input side in pixels")
    args = parser.parse_args()
    if not os.environ.get("LESION_STUDY_DATA"):
        print("error: set LESION_STUDY_DATA to the folder holding kvasir_seg/ and ood_colon_nopolyp/", file=sys.stderr)
        return 2

    config = load_dataset_config("kvasir_seg")
    size = (args.image_size, args.image_size)
    plan = plan_dataset(config)  # also reads every file once, warming the page cache
    samples = [sample for split in ID_SPLITS for sample in plan.splits[split]]
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}")
    print(f"data: {len(samples)} Kvasir-SEG pairs at {size[0]}x{size[1]}, {args.epochs} epochs")

    with tempfile.TemporaryDirectory(prefix="lesion-cache-") as folder:
        started = time.perf_counter()
        bundle = build_bundle(config, image_size=args.image_size, cache_dir=Path(folder))
        build_seconds = time.perf_counter() - started
        print(f"one-off check + decode + write of the cache: {build_seconds:.2f} s")

        decode_rate = run_decode_epochs(samples, size, config.mask_rule, args.epochs, build_augmentation(0))
        cache_rate = run_cache_epochs(Path(folder), bundle.content_hash, args.epochs, build_augmentation(0))

    print(f"decode every epoch + augment: {decode_rate:8.1f} images/s")
    print(f"decode-once cache + augment:  {cache_rate:8.1f} images/s")
    print(f"speed-up: {cache_rate / decode_rate:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
