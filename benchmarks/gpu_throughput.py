"""Training images per second on one GPU at 1, 2 and 4 concurrent trials, and the bf16 speed-up.

    python -m benchmarks.gpu_throughput                       # from the repository root, on a CUDA machine
    LESION_STUDY_DATA=/path/to/data python -m benchmarks.gpu_throughput --seconds 20

Model and recipe: the ``TrialConfig`` defaults (Unet over tu-resnet18, random init, AdamW,
CE + soft Dice, batch 16, the default augmentation, 0 loader workers), trained with the same
step as ``study.train.train_trial``: channels-last, autocast at the trial's precision, and a
``loss.item()`` every step. Data: Kvasir-SEG (the kvasir_seg preset, through the decode-once
cache) at ``--image-size`` px when LESION_STUDY_DATA is set, else the synthetic set at that size.

Each run starts K processes at once on GPU 0, as a study with ``--gpus-per-trial 1/K`` packs
K trials onto one GPU. After ``--warmup-steps`` steps every process waits at a barrier, then
trains for ``--seconds`` through its DataLoader (end to end), waits again, and trains for
``--seconds`` on one batch kept on the GPU (model only). Runs:

    fp32 x 1, bf16 x 1      the mixed-precision speed-up (the precision field of TrialConfig)
    bf16 x 2, bf16 x 4      2 and 4 trials per GPU

The trial default, precision "auto", means bf16 on a GPU that supports it (the first line printed
says whether this one does), so the bf16 runs are what a default trial gets there.

GPU memory per trial is ``torch.cuda.max_memory_allocated`` of each process after both windows;
the caching allocator reserves more than that. Each run takes its start-up (process start, imports,
data and warm-up, an estimated 30 s) plus two windows, so the script takes about
4 x (30 + 2 x ``--seconds``) seconds: an estimated 5 minutes at the default 20 s.

Without CUDA it prints "skipped: no CUDA GPU (torch.cuda.is_available() is False)" and exits 0.
``--cpu-dry-run`` runs the same processes on the CPU, to check the script on a machine without a
GPU; its figures say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import platform
import queue as queue_module
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

import study.data
from study.config import TrialConfig
from study.data import load_data
from study.data.transforms import SegmentationDataset, build_train_transform
from study.driver import format_table
from study.models import build_model
from study.train import _autocast_dtype, build_loss_fn, build_optimizer

PRESET = Path(study.data.__file__).parent / "presets" / "kvasir_seg.yaml"
SKIP_MESSAGE = "skipped: no CUDA GPU (torch.cuda.is_available() is False)"
# (precision, concurrent trials) per run, in order.
RUNS = (("fp32", 1), ("bf16", 1), ("bf16", 2), ("bf16", 4))
MEBIBYTE = 2**20


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


class TrainStep:
    """One optimiser step of a default trial, as ``train_trial`` takes it."""

    def __init__(self, config: TrialConfig, device: torch.device) -> None:
        self.device = device
        self.autocast = _autocast_dtype(config, device)
        model = build_model(config.architecture, config.encoder).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = model.train()
        self.loss_fn = build_loss_fn(config)
        self.optimizer = build_optimizer(config, model)
        # As in train_trial: only fp16 needs loss scaling.
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast == torch.float16 else None

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        images = images.to(self.device, non_blocking=True)
        masks = masks.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        context = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else nullcontext()
        with context:
            outputs = self.model(images)
        loss = self.loss_fn(outputs.float(), masks)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.item()  # waits for the GPU, as train_trial does every step


def endless_batches(loader: DataLoader):
    while True:
        yield from loader


def timed_rate(step, batches, seconds: float, batch_size: int) -> float:
    """Return images per second of ``step`` over ``batches`` for about ``seconds``."""
    images = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        step(*next(batches))
        images += batch_size
    return images / (time.perf_counter() - started)


def measure(rank: int, settings: dict[str, Any], barrier, results) -> None:
    """Warm up, time end to end and then model only, and put one dict of figures on ``results``.

    Runs in a worker process. An error is put on ``results`` too, and breaks the barrier so the
    other workers stop instead of waiting.
    """
    try:
        torch.set_num_threads(settings["threads"])
        device = torch.device(settings["device"])
        config = TrialConfig(batch_size=settings["batch_size"], precision=settings["precision"], seed=rank)
        bundle = load_data(settings["source"], image_size=settings["image_size"])
        dataset = SegmentationDataset(bundle.splits["train"], build_train_transform(config.augmentation, seed=rank))
        loader = DataLoader(
            dataset, batch_size=config.batch_size, shuffle=True, drop_last=True,
            num_workers=config.num_workers, pin_memory=device.type == "cuda",
        )
        step = TrainStep(config, device)
        batches = endless_batches(loader)
        for _ in range(settings["warmup_steps"]):
            step(*next(batches))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)

        # End to end: DataLoader, host-to-device copy and the step, all trials at once.
        barrier.wait()
        end_to_end = timed_rate(step, batches, settings["seconds"], config.batch_size)

        # Model only: one batch kept on the device, so loading and copying cost nothing.
        barrier.wait()
        images, masks = (tensor.to(device) for tensor in next(batches))
        resident = iter(lambda: (images, masks), None)
        model_only = timed_rate(step, resident, settings["seconds"], config.batch_size)

        memory = torch.cuda.max_memory_allocated(device) / MEBIBYTE if device.type == "cuda" else math.nan
        autocast = str(step.autocast).removeprefix("torch.") if step.autocast else "fp32"
        results.put({"rank": rank, "end_to_end": end_to_end, "model_only": model_only, "memory_mib": memory, "autocast": autocast})
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises
        barrier.abort()
        results.put({"rank": rank, "error": f"{type(error).__name__}: {error}"})


def run_concurrent(precision: str, concurrency: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Start ``concurrency`` worker processes at once and return the run's figures."""
    context = mp.get_context("spawn")  # the parent has initialised CUDA, which a forked child cannot use
    barrier = context.Barrier(concurrency)
    results = context.Queue()
    worker_settings = {**settings, "precision": precision}
    workers = [context.Process(target=measure, args=(rank, worker_settings, barrier, results)) for rank in range(concurrency)]
    for worker in workers:
        worker.start()

    # Start-up, data loading and warm-up should take under a minute per process (an estimate), so allow five.
    deadline = time.monotonic() + 300 + 2 * settings["seconds"]
    reports = []
    try:
        while len(reports) < concurrency:
            reports.append(results.get(timeout=max(1.0, deadline - time.monotonic())))
    except queue_module.Empty:
        raise RuntimeError(f"{precision} x {concurrency}: only {len(reports)} of {concurrency} workers reported in time") from None
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()

    errors = [report["error"] for report in reports if "error" in report]
    if errors:
        raise RuntimeError(f"{precision} x {concurrency} failed: {'; '.join(errors)}")
    return {
        "precision": f"{precision} ({reports[0]['autocast']})",
        "trials_per_gpu": concurrency,
        "images_s_total": sum(report["end_to_end"] for report in reports),
        "images_s_per_trial": sum(report["end_to_end"] for report in reports) / concurrency,
        "model_only_images_s_total": sum(report["model_only"] for report in reports),
        "memory_per_trial_mib": max(report["memory_mib"] for report in reports),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=256, help="image side in pixels (default: 256)")
    parser.add_argument("--batch-size", type=int, default=TrialConfig.batch_size, help="batch size per trial (default: the trial default)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each timed window in seconds (default: 20)")
    parser.add_argument("--warmup-steps", type=int, default=10, help="untimed steps before the first window (default: 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per trial, as a 1-CPU trial gets (default: 1)")
    parser.add_argument("--cpu-dry-run", action="store_true", help="run on the CPU to check the script; the figures mean nothing")
    args = parser.parse_args()

    if not args.cpu_dry_run and not torch.cuda.is_available():
        print(SKIP_MESSAGE)
        return 0

    device = "cpu" if args.cpu_dry_run else "cuda"
    source = str(PRESET) if os.environ.get("LESION_STUDY_DATA") else "synthetic"
    started = time.perf_counter()
    bundle = load_data(source, image_size=args.image_size)  # builds the cache once, before the workers read it
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), torch {torch.__version__}")
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        print(f"GPU 0: {properties.name}, {properties.total_memory / 2**30:.0f} GiB, bf16 supported: {torch.cuda.is_bf16_supported()}")
    else:
        print("device: CPU dry run; these figures say nothing about a GPU")
    print(f"data: {bundle.description}, {len(bundle.splits['train'])} training images at {args.image_size}px "
          f"(loaded in {time.perf_counter() - started:.1f} s); batch {args.batch_size}; {args.seconds:g} s windows")

    settings = {
        "device": device, "source": source, "image_size": args.image_size, "batch_size": args.batch_size,
        "seconds": args.seconds, "warmup_steps": args.warmup_steps, "threads": args.threads,
    }
    rows = []
    for precision, concurrency in RUNS:
        rows.append(run_concurrent(precision, concurrency, settings))
        print(f"  {rows[-1]['precision']} x {concurrency}: {rows[-1]['images_s_total']:.0f} images/s", flush=True)

    print()
    print(format_table(rows, ["precision", "trials_per_gpu", "images_s_total", "images_s_per_trial", "model_only_images_s_total", "memory_per_trial_mib"]))
    fp32, bf16 = rows[0], rows[1]
    print(f"\nbf16 / fp32 at 1 trial per GPU: end to end {bf16['images_s_total'] / fp32['images_s_total']:.2f}x, "
          f"model only {bf16['model_only_images_s_total'] / fp32['model_only_images_s_total']:.2f}x")
    print(f"total time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
