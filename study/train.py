"""One training run: a plain function with a reporting callback.

Nothing here imports Ray or MLflow. ``train_trial`` trains for ``epochs`` epochs, evaluates ID
validation Dice and OoD validation specificity after each epoch, and hands every epoch's
metrics and a checkpoint folder to ``report``. The Ray Tune adapter turns that call into
``ray.tune.report``; a notebook can pass ``print``.

    from study.config import TrialConfig
    from study.data import load_data
    from study.train import train_trial
    data = load_data("synthetic", image_size=64)
    train_trial(TrialConfig(epochs=1), data, report=lambda metrics, folder: print(metrics))
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from study.config import TrialConfig
from study.data.bundle import DataBundle, Split
from study.data.transforms import SegmentationDataset, build_train_transform
from study.losses import MixtureLoss, build_loss, ce_weight_at
from study.metrics import evaluate, resize_probabilities
from study.models import build_model

logger = logging.getLogger(__name__)

OBJECTIVES = ("id_dice", "ood_specificity")
CHECKPOINT_FILE = "checkpoint.pt"

# Called once per epoch with that epoch's metrics and a folder holding its checkpoint. The folder
# is deleted when the call returns, so the callback must copy what it keeps.
ReportFn = Callable[[dict[str, float], Path], None]


class TrialDiverged(RuntimeError):
    """Training produced a non-finite loss, or an objective that is undefined."""


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, numpy and torch; optionally ask torch for deterministic kernels.

    CPU training is deterministic for a fixed seed and thread count without the option. On CUDA
    the option selects deterministic cuDNN and cuBLAS kernels; operations that have none (the
    backward pass of the upsampling in smp decoders, for one) warn instead of failing, so a CUDA
    run stays close to but not always bitwise reproducible.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS reads this before its first call; without it deterministic mode raises.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def build_loss_fn(config: TrialConfig) -> MixtureLoss:
    """Build the CE-family + region-loss mixture that a trial trains with."""
    if config.ce_loss == "focal":
        ce = build_loss("focal", gamma=config.focal_gamma)
    else:
        ce = build_loss("ce")
    per_image = config.dice_variant == "per_image"
    if config.region_loss == "tversky":
        region = build_loss(
            "tversky", alpha=config.tversky_alpha, beta=config.tversky_beta, per_image=per_image
        )
    else:
        region = build_loss("dice", per_image=per_image, smooth=config.dice_smooth, log=config.log_dice)
    return MixtureLoss(ce=ce, region=region, ce_weight=config.ce_weight)


def build_optimizer(config: TrialConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "nadam":
        return torch.optim.NAdam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _autocast_dtype(config: TrialConfig, device: torch.device) -> torch.dtype | None:
    """Return the mixed-precision dtype for this device, or None for full precision."""
    if device.type != "cuda" or config.precision == "fp32":
        return None
    if config.precision == "fp16":
        return torch.float16
    if config.precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


@torch.no_grad()
def predict_probabilities(
    model: torch.nn.Module, split: Split, device: torch.device, batch_size: int, autocast: torch.dtype | None
) -> torch.Tensor:
    """Return sigmoid probabilities of shape (N, 1, H, W), float32 on the CPU."""
    model.eval()
    loader = DataLoader(SegmentationDataset(split), batch_size=batch_size, shuffle=False)
    outputs = []
    for images, _ in loader:
        images = images.to(device)
        context = torch.autocast(device.type, dtype=autocast) if autocast else nullcontext()
        with context:
            logits = model(images)
        outputs.append(torch.sigmoid(logits.float()).cpu())
    return torch.cat(outputs)


def _at_mask_size(probabilities: torch.Tensor, split: Split) -> torch.Tensor | list[torch.Tensor]:
    """Resize probabilities back to the original mask sizes where the split keeps them."""
    if split.original_masks is None:
        return probabilities[:, 0]
    return resize_probabilities(probabilities, [mask.shape for mask in split.original_masks])


def _masks_for_metrics(split: Split) -> torch.Tensor | list[torch.Tensor]:
    # Copies, because arrays from Ray's object store or the cache are read-only.
    if split.original_masks is None:
        return torch.tensor(np.asarray(split.masks))
    return [torch.tensor(np.asarray(mask)) for mask in split.original_masks]


def evaluate_splits(
    model: torch.nn.Module,
    id_split: Split,
    ood_split: Split,
    config: TrialConfig,
    device: torch.device,
    autocast: torch.dtype | None = None,
) -> dict[str, float]:
    """Evaluate one ID split and one lesion-free split at the original mask resolution."""
    id_probs = predict_probabilities(model, id_split, device, config.batch_size, autocast)
    ood_probs = predict_probabilities(model, ood_split, device, config.batch_size, autocast)
    return evaluate(
        _at_mask_size(id_probs, id_split),
        _masks_for_metrics(id_split),
        _at_mask_size(ood_probs, ood_split),
        threshold=config.threshold,
        min_area=config.min_area,
    )


def _save_checkpoint(folder: Path, epoch: int, model, optimizer, scheduler, scaler) -> Path:
    path = folder / CHECKPOINT_FILE
    torch.save(
        {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "torch_rng": torch.get_rng_state(),
        },
        path,
    )
    return path


def _check_objectives(metrics: dict[str, float], epoch: int) -> None:
    undefined = [name for name in OBJECTIVES if not math.isfinite(metrics.get(name, math.nan))]
    if undefined:
        raise TrialDiverged(
            f"objectives {undefined} are undefined after epoch {epoch} "
            f"(values {[metrics.get(name) for name in undefined]}); the trial is failed, not scored"
        )


def train_trial(
    config: TrialConfig,
    data: DataBundle,
    report: ReportFn,
    resume_from: Path | None = None,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Train one model and report validation metrics after every epoch.

    Args:
        config: the trial's typed settings.
        data: the decoded splits; only ``train``, ``id_val`` and ``ood_val`` steer training, and
            ``id_test``/``ood_test`` are evaluated once after the last epoch (keys prefixed
            ``test_``), never used for selection.
        report: called after every epoch with metrics and a checkpoint folder.
        resume_from: a folder holding a checkpoint written by an earlier report; training
            continues after its epoch.
        device: defaults to CUDA when available, else the CPU.

    Returns:
        The last epoch's metrics.

    Raises:
        TrialDiverged: on a non-finite training loss or an undefined objective.
    """
    # Setup: seeds, device, model, loss, optimiser and a per-step cosine schedule.
    seed_everything(config.seed, config.deterministic)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = _autocast_dtype(config, device)
    model = build_model(config.architecture, config.encoder, encoder_weights=config.encoder_weights).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss_fn(config)
    optimizer = build_optimizer(config, model)
    train_split = data.splits["train"]
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if autocast == torch.float16 else None

    # Resume: restore weights, optimiser, schedule and the epoch counter.
    start_epoch = 0
    if resume_from is not None:
        state = torch.load(Path(resume_from) / CHECKPOINT_FILE, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = state["epoch"] + 1
        logger.info("resuming from %s at epoch %d", resume_from, start_epoch + 1)

    transform = build_train_transform(config.augmentation, seed=config.seed)
    dataset = SegmentationDataset(train_split, transform)
    metrics: dict[str, float] = {}
    for epoch in range(start_epoch, config.epochs):
        # The loss weight for this epoch, and an augmentation stream seeded by (seed, epoch).
        loss_fn.ce_weight = ce_weight_at(
            config.loss_schedule, epoch, config.epochs, config.ce_weight, config.finetune_fraction
        )
        transform.set_random_seed(config.seed * 10_000 + epoch)
        generator = torch.Generator().manual_seed(config.seed * 10_000 + epoch)
        loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=True,
            drop_last=len(train_split) > config.batch_size,
            generator=generator,
            num_workers=config.num_workers,
            pin_memory=device.type == "cuda",
        )

        # Train one epoch.
        model.train()
        # Summed on the device and read once per epoch: a .item() per step would make the CPU
        # wait for the GPU at every batch.
        total_loss = torch.zeros((), device=device)
        batches = 0
        for images, masks in loader:
            images = images.to(device, non_blocking=True)
            masks = masks.to(device, non_blocking=True)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            context = torch.autocast(device.type, dtype=autocast) if autocast else nullcontext()
            with context:
                outputs = model(images)
            if isinstance(outputs, (tuple, list)):
                outputs = type(outputs)(output.float() for output in outputs)
            else:
                outputs = outputs.float()
            loss = loss_fn(outputs, masks)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            scheduler.step()
            total_loss += loss.detach()
            batches += 1

        # A non-finite loss anywhere in the epoch makes the sum non-finite.
        epoch_loss = total_loss.item() / max(batches, 1)
        if not math.isfinite(epoch_loss):
            raise TrialDiverged(f"non-finite training loss in epoch {epoch + 1} (mean {epoch_loss})")

        # Validate: the two objectives and their companions on the validation splits.
        metrics = evaluate_splits(model, data.splits["id_val"], data.splits["ood_val"], config, device, autocast)
        metrics.update(epoch=epoch + 1, train_loss=epoch_loss, ce_weight=loss_fn.ce_weight)
        _check_objectives(metrics, epoch + 1)

        # Test once, after the last epoch; these numbers are reported, never searched on.
        if epoch + 1 == config.epochs:
            test = evaluate_splits(model, data.splits["id_test"], data.splits["ood_test"], config, device, autocast)
            metrics.update({f"test_{name}": value for name, value in test.items()})

        with tempfile.TemporaryDirectory(prefix="lesion-ckpt-") as folder:
            _save_checkpoint(Path(folder), epoch, model, optimizer, scheduler, scaler)
            report(dict(metrics), Path(folder))
    return metrics
