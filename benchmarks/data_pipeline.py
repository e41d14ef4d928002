"""Samples per second of the training DataLoader against the default model's training step.

    python -m benchmarks.data_pipeline                        # from the repository root
    LESION_STUDY_DATA=/path/to/data python -m benchmarks.data_pipeline --image-size 128 --threads 1

Loader: ``SegmentationDataset`` over the ``train`` split with the "reference" augmentation
(``build_train_transform``), in a ``DataLoader`` with the trial's default batch size, shuffling
and ``--num-workers`` workers (``TrialConfig`` defaults to 0, so a trial loads in its own process).
Every batch of ``--epochs`` passes is drawn and thrown away. Sources:

    synthetic   the embedded synthetic set, generated at ``--image-size``
    kvasir_seg  Kvasir-SEG through the decode-once cache (skipped when LESION_STUDY_DATA is unset);
                the cache is built first if missing, and that one-off cost is not timed

Model: forward, loss, backward and optimiser step of the ``TrialConfig`` default model (Unet over
tu-resnet18, AdamW, CE + soft Dice) on one fixed batch of the same size, after one warm-up step.
Both run with ``--threads`` torch threads; a study trial that reserves 1 CPU gets 1.

A ratio loader/model above 1 means loading is faster than training. With 0 workers the two run
one after the other, so the loader takes 1 / (1 + ratio) of each step's time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import study.data
from study.config import TrialConfig
from study.data import load_data
from study.data.bundle import Split
from study.data.transforms import SegmentationDataset, build_train_transform
from study.driver import format_table
from study.models import build_model
from study.train import build_loss_fn, build_optimizer

PRESET = Path(study.data.__file__).parent / "presets" / "kvasir_seg.yaml"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def loader_rate(split: Split, batch_size: int, epochs: int, num_workers: int) -> float:
    """Return training samples per second drawn through the DataLoader, augmentation included."""
    dataset = SegmentationDataset(split, build_train_transform("reference", seed=0))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)
    samples = 0
    started = time.perf_counter()
    for _ in range(epochs):
        for images, _masks in loader:
            samples += len(images)
    return samples / (time.perf_counter() - started)


def model_rate(image_size: int, batch_size: int, steps: int) -> float:
    """Return samples per second of forward + backward + step of the default model on the CPU."""
    config = TrialConfig(batch_size=batch_size)
    model = build_model(config.architecture, config.encoder)
    model.train()
    loss_fn = build_loss_fn(config)
    optimizer = build_optimizer(config, model)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    masks = (torch.rand(batch_size, 1, image_size, image_size, generator=generator) > 0.8).float()

    def step() -> None:
        loss = loss_fn(model(images), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocator and kernel selection
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128, help="image side in pixels for both sources and the model (default: 128)")
    parser.add_argument("--batch-size", type=int, default=TrialConfig.batch_size, help="batch size (default: the trial default)")
    parser.add_argument("--epochs", type=int, default=2, help="timed passes over each source's train split (default: 2)")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps of the model (default: 6)")
    parser.add_argument("--num-workers", type=int, default=TrialConfig.num_workers, help="DataLoader workers (default: the trial default)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for loader and model (default: 1, as in a 1-CPU trial)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, torch {torch.__version__}")
    print(f"settings: {args.image_size}px, batch {args.batch_size}, {args.num_workers} loader workers, {args.threads} torch threads")

    sources = {"synthetic": load_data("synthetic", image_size=args.image_size)}
    if os.environ.get("LESION_STUDY_DATA"):
        started = time.perf_counter()
        sources["kvasir_seg (cache)"] = load_data(str(PRESET), image_size=args.image_size)
        print(f"kvasir_seg: loaded in {time.perf_counter() - started:.2f} s (cache hit, or built on first use)")
    else:
        print("kvasir_seg: skipped, because LESION_STUDY_DATA is unset; set it to the folder holding kvasir_seg/ and ood_colon_nopolyp/")

    model = model_rate(args.image_size, args.batch_size, args.steps)
    rows = []
    for name, bundle in sources.items():
        train = bundle.splits["train"]
        loader = loader_rate(train, args.batch_size, args.epochs, args.num_workers)
        rows.append({"source": name, "train_images": len(train), "loader_samples_s": loader, "model_samples_s": model, "loader/model": loader / model})
    print()
    print(format_table(rows, ["source", "train_images", "loader_samples_s", "model_samples_s", "loader/model"]))
    slowest = min(row["loader/model"] for row in rows)
    verdict = "never the bottleneck" if slowest > 1 else "the bottleneck for at least one source"
    print(f"\nThe loader is {verdict} (lowest ratio {slowest:.1f}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
