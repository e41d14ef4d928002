"""The shipped presets on the public datasets named by LESION_STUDY_DATA."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from study.data.bundle import ID_SPLITS, OOD_SPLITS, SPLITS
from study.data.check import check_dataset
from study.data.config import build_bundle, load_dataset_config

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not os.environ.get("LESION_STUDY_DATA"),
        reason="LESION_STUDY_DATA is not set; point it at the folder holding kvasir_seg/, fuseg_train/, "
        "ood_colon_nopolyp/ and ood_healthy_foot_skin/",
    ),
]

# Pairs and lesion-free images in each preset, from the datasets' published counts.
EXPECTED = {"kvasir_seg": (998, 300), "fuseg": (791, 96)}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_preset_checks_ok(preset: str) -> None:
    report = check_dataset(load_dataset_config(preset))
    assert report.ok, report.format()
    pairs, lesion_free = EXPECTED[preset]
    assert sum(report.counts[split] for split in ID_SPLITS) == pairs
    assert sum(report.counts[split] for split in OOD_SPLITS) == lesion_free
    assert report.counts["ood_val"] == lesion_free // 2
    assert all(report.foreground[split] > 0 for split in ID_SPLITS)


def test_fuseg_excluded_folder_not_read() -> None:
    report = check_dataset(load_dataset_config("fuseg"), image_size=128)
    assert report.ok, report.format()
    assert not any("excluded_empty_masks" in problem for problem in report.errors + report.warnings)


def test_fuseg_small_lesions_vanish_at_64() -> None:
    # FUSeg ulcers can cover a handful of pixels at 256 px; nearest-neighbour resizing to 64 px
    # misses some of them, and the check names each file.
    report = check_dataset(load_dataset_config("fuseg"), image_size=64)
    assert report.errors
    assert all("vanishes at 64x64" in error for error in report.errors)


@pytest.mark.parametrize("preset, side", [("kvasir_seg", 64), ("fuseg", 128)])
def test_build_bundle_and_cache(preset: str, side: int, cache_dir: Path) -> None:
    config = load_dataset_config(preset)
    started = time.perf_counter()
    first = build_bundle(config, image_size=side, cache_dir=cache_dir)
    decode_seconds = time.perf_counter() - started

    pairs, lesion_free = EXPECTED[preset]
    assert sum(len(first.splits[split]) for split in ID_SPLITS) == pairs
    assert sum(len(first.splits[split]) for split in OOD_SPLITS) == lesion_free
    for split in SPLITS:
        assert first.splits[split].images.shape[1:] == (side, side, 3)
        assert first.splits[split].images.dtype == np.uint8
        assert set(np.unique(first.splits[split].masks).tolist()) <= {0, 1}
    assert first.splits["id_val"].original_masks[0].shape == (256, 256)

    started = time.perf_counter()
    second = build_bundle(config, image_size=side, cache_dir=cache_dir)
    load_seconds = time.perf_counter() - started
    assert isinstance(second.splits["train"].images, np.memmap)
    assert load_seconds < decode_seconds
    assert second.content_hash == first.content_hash
    for split in SPLITS:
        np.testing.assert_array_equal(np.asarray(second.splits[split].images), first.splits[split].images)
        np.testing.assert_array_equal(np.asarray(second.splits[split].masks), first.splits[split].masks)


def copy_mini_kvasir(target: Path, pairs: int = 12, lesion_free: int = 6) -> Path:
    """Copy a few Kvasir-SEG pairs and lesion-free frames, and write a config for them."""
    data = Path(os.environ["LESION_STUDY_DATA"])
    images = sorted((data / "kvasir_seg" / "images").iterdir())[:pairs]
    for folder in ("images", "masks", "free"):
        (target / folder).mkdir(parents=True)
    for image in images:
        shutil.copy2(image, target / "images" / image.name)
        shutil.copy2(data / "kvasir_seg" / "masks" / f"{image.stem}.png", target / "masks" / f"{image.stem}.png")
    for image in sorted((data / "ood_colon_nopolyp" / "images").iterdir())[:lesion_free]:
        shutil.copy2(image, target / "free" / image.name)
    config = {
        "id_sources": [{"layout": "folders", "images": "images", "masks": "masks"}],
        "ood_sources": [{"layout": "folder", "images": "free"}],
        "image_size": 32,
    }
    path = target / "mini.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_content_hash_tracks_mtime_and_bytes(tmp_path: Path) -> None:
    path = copy_mini_kvasir(tmp_path / "mini")
    base = build_bundle(load_dataset_config(path), use_cache=False).content_hash
    assert build_bundle(load_dataset_config(path), use_cache=False).content_hash == base

    mask = next((tmp_path / "mini" / "masks").iterdir())
    stat = mask.stat()
    os.utime(mask, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = build_bundle(load_dataset_config(path), use_cache=False).content_hash
    assert touched != base

    # Same size and modification time, one byte different: only the file digest notices.
    image = next((tmp_path / "mini" / "free").iterdir())
    stat = image.stat()
    data = bytearray(image.read_bytes())
    data[-3] ^= 0x01
    image.write_bytes(bytes(data))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    edited = build_bundle(load_dataset_config(path), use_cache=False).content_hash
    assert edited not in (base, touched)
