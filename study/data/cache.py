"""Decode-once cache: each dataset is decoded and resized once per machine and image size.

An entry is a folder named by the bundle's content hash, holding one uint8 ``.npy`` file per array
and an ``index.json`` with names, shapes and the check's warnings. Every file is written under a
temporary name and moved into place with ``os.replace``, and the index goes last, so a reader sees
either a complete entry or none, even while another process writes the same entry.

The content hash covers every file's path relative to the data root, size, modification time and
SHA-256, the split membership, the image size and the mask rule, so editing, touching or renaming
any file makes a new entry, while the same files under another root share one. Old entries are
never deleted; remove the cache folder to reclaim space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np

from study.data.bundle import SPLITS, DataBundle, Split
from study.data.check import (
    DataCheckError,
    DataCheckReport,
    DatasetPlan,
    inspect_plan,
    network_size,
    plan_dataset,
    sample_name,
)
from study.data.config import DatasetConfig
from study.data.readers import MaskRule

logger = logging.getLogger(__name__)

CACHE_ENV = "LESION_STUDY_CACHE"
# Bump when decoding or resizing changes, so entries from older code are not reused.
CACHE_FORMAT = 1
INDEX_NAME = "index.json"


def default_cache_dir() -> Path:
    """Return ``$LESION_STUDY_CACHE`` if set, else ``~/.cache/lesion-study``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "lesion-study"


def content_hash(plan: DatasetPlan, root: Path, size: tuple[int, int], rule: MaskRule) -> str:
    """Return a SHA-256 over the files of every split (name, size, mtime, bytes), ``size`` and ``rule``.

    File names enter relative to ``root``, so the same files under another root hash the same.
    """
    digest = hashlib.sha256()
    header = {"format": CACHE_FORMAT, "image_size": list(size), "mask_rule": asdict(rule)}
    digest.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    for split in SPLITS:
        digest.update(f"\0split {split}\0".encode("utf-8"))
        for sample in plan.splits[split]:
            for path in (sample.image, sample.mask):
                if path is None:
                    digest.update(b"-\0")
                    continue
                stat = path.stat()
                fields = (sample_name(path, root), stat.st_size, stat.st_mtime_ns, plan.digests.get(path, ""))
                digest.update("\0".join(map(str, fields)).encode("utf-8") + b"\n")
    return digest.hexdigest()


def build_or_load_bundle(
    config: DatasetConfig,
    image_size: int | None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> DataBundle:
    """Return the bundle of ``config`` from the cache, or check and decode it and store it there.

    Raises:
        DataCheckError: listing or decoding found errors.
    """
    size = network_size(config, image_size)
    plan = plan_dataset(config)
    if plan.errors:
        report = DataCheckReport(config.name, config.path, config.root, size, errors=plan.errors)
        raise DataCheckError(report)

    key = content_hash(plan, config.root, size, config.mask_rule)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if use_cache:
        bundle = load_cached_bundle(folder, key)
        if bundle is not None:
            logger.info("loaded %s at %dx%d from cache %s", config.name, *size, folder / key)
            return bundle

    report, splits = inspect_plan(plan, config, size, keep_arrays=True)
    if not report.ok:
        raise DataCheckError(report)
    for warning in report.warnings:
        logger.warning("%s: %s", config.name, warning)
    description = f"{config.name} ({config.path})" if config.path else config.name
    bundle = DataBundle(splits=splits, description=description, content_hash=key, warnings=report.warnings)
    if use_cache:
        save_bundle(folder, bundle)
        logger.info("decoded %s at %dx%d into cache %s", config.name, *size, folder / key)
    return bundle


def save_bundle(cache_dir: Path, bundle: DataBundle) -> Path:
    """Write ``bundle`` under ``cache_dir / bundle.content_hash`` and return that folder."""
    entry = Path(cache_dir) / bundle.content_hash
    entry.mkdir(parents=True, exist_ok=True)
    index = {
        "format": CACHE_FORMAT,
        "description": bundle.description,
        "content_hash": bundle.content_hash,
        "warnings": bundle.warnings,
        "splits": {},
    }
    for name, split in bundle.splits.items():
        _write_array(entry / f"{name}_images.npy", split.images)
        _write_array(entry / f"{name}_masks.npy", split.masks)
        original_shapes = None
        if split.original_masks is not None:
            flat = [mask.ravel() for mask in split.original_masks]
            packed = np.concatenate(flat) if flat else np.zeros(0, np.uint8)
            _write_array(entry / f"{name}_original_masks.npy", packed)
            original_shapes = [list(mask.shape) for mask in split.original_masks]
        index["splits"][name] = {
            "names": split.names,
            "images_shape": list(split.images.shape),
            "original_shapes": original_shapes,
        }
    _write_bytes(entry / INDEX_NAME, json.dumps(index).encode("utf-8"))
    return entry


def load_cached_bundle(cache_dir: Path, key: str) -> DataBundle | None:
    """Return the bundle stored under ``cache_dir / key``, or None when absent or damaged.

    Arrays come back as read-only memory maps, which ``np.asarray`` and Ray accept as they are.
    """
    entry = Path(cache_dir) / key
    try:
        index = json.loads((entry / INDEX_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("ignoring damaged cache index %s: %s", entry / INDEX_NAME, error)
        return None
    if index.get("format") != CACHE_FORMAT or index.get("content_hash") != key:
        return None

    try:
        splits = {name: _load_split(entry, name, index["splits"][name]) for name in SPLITS}
        return DataBundle(
            splits=splits,
            description=index["description"],
            content_hash=key,
            warnings=list(index["warnings"]),
        )
    except (OSError, ValueError, KeyError) as error:
        logger.warning("ignoring damaged cache entry %s: %s", entry, error)
        return None


def _load_split(entry: Path, name: str, meta: dict) -> Split:
    images = np.load(entry / f"{name}_images.npy", mmap_mode="r")
    masks = np.load(entry / f"{name}_masks.npy", mmap_mode="r")
    if list(images.shape) != meta["images_shape"]:
        raise ValueError(f"{name}_images.npy has shape {images.shape}, index.json records {meta['images_shape']}")

    originals = None
    if meta["original_shapes"] is not None:
        flat = np.load(entry / f"{name}_original_masks.npy", mmap_mode="r")
        originals, start = [], 0
        for height, width in meta["original_shapes"]:
            originals.append(flat[start : start + height * width].reshape(height, width))
            start += height * width
        if start != flat.size:
            raise ValueError(f"{name}_original_masks.npy contains {flat.size} values, index.json records {start}")
    return Split(images=images, masks=masks, names=list(meta["names"]), original_masks=originals)


def _write_array(path: Path, array: np.ndarray) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_bytes(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
