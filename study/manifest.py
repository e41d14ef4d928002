"""The study manifest: everything needed to rerun a study and to tell what changed since.

Written to ``<storage>/manifest.json`` before the first trial and logged as an artifact of the
study's MLflow parent run. Nothing here imports Ray.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import torch

from study.data import SYNTHETIC, DataBundle
from study.metrics import DEFAULT_AREA_THRESHOLDS, METRIC_DEFINITIONS_VERSION

MANIFEST_FILE = "manifest.json"
PACKAGES = (
    "lesion-loss-study", "torch", "torchvision", "ray", "optuna", "mlflow",
    "segmentation-models-pytorch", "timm", "albumentations", "numpy",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["cuda"] = torch.version.cuda or "none"
    versions["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none"
    return versions


def git_state() -> dict[str, Any]:
    """Return the commit of the checkout this package runs from, and whether it has changes."""
    folder = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder, capture_output=True, text=True, check=True, timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "note": "not a git checkout"}
    return {"commit": commit, "dirty": bool(status.strip())}


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count()}
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gib"] = None
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": properties.name, "memory_gib": round(properties.total_memory / 2**30, 1),
                       "count": torch.cuda.device_count()}
    else:
        info["gpu"] = None
    return info


def file_digests(source: str, data_root: str | None) -> dict[str, str]:
    """Return the SHA-256 of every file a dataset config lists, keyed by path under its root.

    The synthetic dataset has no files, so it returns an empty mapping.
    """
    if source == SYNTHETIC:
        return {}
    from study.data.check import plan_dataset, sample_name
    from study.data.config import load_dataset_config

    config = load_dataset_config(source, data_root=data_root)
    plan = plan_dataset(config)
    return {sample_name(path, config.root): digest for path, digest in sorted(plan.digests.items())}


def data_fingerprint(bundle: DataBundle, source: str, data_root: str | None) -> dict[str, Any]:
    return {
        "description": bundle.description,
        "content_hash": bundle.content_hash,
        "splits": {
            name: {"count": len(split), "membership_hash": split.membership_hash()}
            for name, split in bundle.splits.items()
        },
        "files": file_digests(source, data_root),
    }


def build_manifest(
    study_config: Mapping[str, Any],
    space: Any,
    base_trial_config: Mapping[str, Any],
    bundle: DataBundle,
) -> dict[str, Any]:
    """Collect code, versions, config, data, search and machine in one JSON-ready mapping."""
    from study import __version__

    return {
        "product": {"version": __version__, **git_state()},
        "command": sys.argv,
        "versions": package_versions(),
        "study": dict(study_config),
        "trial_defaults": dict(base_trial_config),
        "data": data_fingerprint(bundle, study_config["data"], study_config.get("data_root")),
        "search": {
            "space": space.name,
            "description": space.description,
            "sampler": study_config.get("sampler") or space.sampler,
            "sampler_seed": study_config.get("sampler_seed"),
            "initial_points": [dict(point) for point in space.initial_points] if study_config.get("initial_points", True) else [],
            "grid": {key: list(values) for key, values in (space.grid or {}).items()},
        },
        "metrics": {
            "definitions_version": METRIC_DEFINITIONS_VERSION,
            "threshold": base_trial_config.get("threshold", 0.5),
            "min_area": base_trial_config.get("min_area", 0),
            "area_thresholds": list(DEFAULT_AREA_THRESHOLDS),
            "empty_mask_policy": "ID Dice of an empty mask with an empty prediction is undefined and left out; "
            "with a non-empty prediction it is 0",
        },
        "machine": machine_info(),
        # Ray runs a trial with as many torch threads as CPUs it reserves; a replay uses the same
        # count, because the thread count changes the order of floating-point sums.
        "torch_threads_per_trial": max(1, int(study_config.get("cpus_per_trial") or 1)),
    }


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> Path:
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
    return path


def version_differences(recorded: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    return [
        f"{name}: recorded {recorded[name]}, now {current.get(name, 'not installed')}"
        for name in sorted(recorded)
        if recorded[name] != current.get(name, "not installed")
    ]


def file_differences(recorded: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Name every file whose contents changed, and every file added or removed."""
    changed = [f"changed: {name}" for name in sorted(set(recorded) & set(current)) if recorded[name] != current[name]]
    removed = [f"removed: {name}" for name in sorted(set(recorded) - set(current))]
    added = [f"added: {name}" for name in sorted(set(current) - set(recorded))]
    return changed + removed + added
