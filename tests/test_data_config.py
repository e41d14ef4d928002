"""Dataset configs, the dataset check, splitting, and building bundles from small on-disk datasets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

from study.data.bundle import SPLITS
from study.data.check import DataCheckError, check_dataset
from study.data.config import (
    DataConfigError,
    build_bundle,
    load_dataset_config,
    parse_dataset_config,
    shipped_presets,
)

REPO = Path(__file__).resolve().parents[1]
SIDE = 32


def write_image(path: Path, seed: int, size: tuple[int, int] = (SIDE, SIDE)) -> None:
    """Write random RGB noise, so every seed gives different file bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_mask(path: Path, size: tuple[int, int] = (SIDE, SIDE), value: int = 255, lesion: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros(size, np.uint8)
    if lesion:
        mask[8:24, 8:24] = value
    Image.fromarray(mask).save(path)


def make_dataset(root: Path, n_id: int = 20, n_ood: int = 10, extra: dict | None = None) -> Path:
    """Write ``n_id`` image/mask pairs, ``n_ood`` lesion-free images and a config beside them."""
    for index in range(n_id):
        write_image(root / "lesions" / "images" / f"{index:03d}.png", seed=index)
        write_mask(root / "lesions" / "masks" / f"{index:03d}.png")
    for index in range(n_ood):
        write_image(root / "healthy" / f"h{index:03d}.png", seed=1000 + index)
    config = {
        "id_sources": [{"layout": "folders", "images": "lesions/images", "masks": "lesions/masks"}],
        "ood_sources": [{"layout": "folder", "images": "healthy"}],
        "split": {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0},
        "image_size": SIDE,
    }
    config.update(extra or {})
    return write_config(root / "data.yaml", config)


def write_config(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "study.data", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )


# Parsing.


def test_relative_paths_start_at_config_folder(tmp_path: Path) -> None:
    config = load_dataset_config(make_dataset(tmp_path / "set"))
    assert config.root == (tmp_path / "set").resolve()
    assert config.id_sources[0].images == (tmp_path / "set" / "lesions" / "images").resolve()
    assert config.image_size == (SIDE, SIDE)
    assert config.mean == (0.485, 0.456, 0.406)


def test_root_variable_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_DATA", str(tmp_path / "data"))
    path = make_dataset(tmp_path / "cfg", extra={"root": "${SOME_DATA}"})
    config = load_dataset_config(path)
    assert config.root == (tmp_path / "data").resolve()
    assert config.ood_sources[0].images == (tmp_path / "data" / "healthy").resolve()


@pytest.mark.parametrize("empty", [True, False])
def test_unset_variable_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty: bool) -> None:
    if empty:
        monkeypatch.setenv("NOT_SET_ANYWHERE", "")
    else:
        monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = make_dataset(tmp_path, extra={"root": "${NOT_SET_ANYWHERE}/x"})
    with pytest.raises(DataConfigError) as caught:
        load_dataset_config(path)
    message = str(caught.value)
    assert "NOT_SET_ANYWHERE" in message
    assert "--data-root" in message
    assert str(path) in message


def test_data_root_overrides_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = make_dataset(tmp_path / "cfg", extra={"root": "${NOT_SET_ANYWHERE}"})
    config = load_dataset_config(path, data_root=tmp_path / "elsewhere")
    assert config.root == (tmp_path / "elsewhere").resolve()
    assert config.id_sources[0].masks == (tmp_path / "elsewhere" / "lesions" / "masks").resolve()


def test_unknown_key_lists_valid_keys(tmp_path: Path) -> None:
    path = make_dataset(tmp_path, extra={"image_szie": 64})
    with pytest.raises(DataConfigError) as caught:
        load_dataset_config(path)
    message = str(caught.value)
    assert "image_szie" in message
    assert "image_size" in message  # listed among the valid keys
    assert str(path) in message


def test_unknown_source_key_names_entry(tmp_path: Path) -> None:
    raw = {"id_sources": [{"layout": "folders", "images": "a", "masks": "b", "labels": "c"}]}
    with pytest.raises(DataConfigError, match=r"id_sources\[0\]\.labels"):
        parse_dataset_config({**raw, "ood_sources": [{"layout": "folder", "images": "h"}]}, path=tmp_path / "c.yaml")


BASE = {
    "id_sources": [{"layout": "folders", "images": "a", "masks": "b"}],
    "ood_sources": [{"layout": "folder", "images": "h"}],
}


@pytest.mark.parametrize(
    "extra, key",
    [
        ({"split": {"val_fraction": 1.5}}, "split.val_fraction"),
        ({"split": {"val_fraction": 0.6, "test_fraction": 0.5}}, "split"),
        ({"split": {"folds": 5, "fold": 5}}, "split.fold"),
        ({"split": {"folds": 1, "fold": 0}}, "split.folds"),
        ({"split": {"folds": 5, "fold": 0, "val_fraction": 0.2}}, "split"),
        ({"id_val_sources": BASE["id_sources"], "split": {"folds": 5, "fold": 0}}, "split.folds"),
        ({"split": {"files": {"train": "t.txt"}}}, "split.files"),
        ({"split": {"seed": -1}}, "split.seed"),
        ({"ood_split": {"val_fraction": "half"}}, "ood_split.val_fraction"),
        ({"image_size": "big"}, "image_size"),
        ({"image_size": [64]}, "image_size"),
        ({"mask_rule": {"threshold": 2}}, "mask_rule.threshold"),
        ({"mask_rule": {"max_value": 0}}, "mask_rule.max_value"),
        ({"mask_tolerance": 0.7}, "mask_tolerance.value"),
        ({"normalization": {"std": [0.2, 0.0, 0.2]}}, "normalization.std"),
        ({"normalization": {"mean": [0.5, 0.5]}}, "normalization.mean"),
        ({"id_sources": [{"layout": "zip", "images": "a"}]}, "id_sources[0].layout"),
        ({"id_sources": [{"preset": "isic", "path": "a"}]}, "id_sources[0].preset"),
        ({"ood_sources": [{"layout": "folders", "images": "a", "masks": "b"}]}, "ood_sources[0].layout"),
        ({"id_sources": []}, "id_sources"),
        ({"ood_sources": None}, "ood_sources"),
        ({"id_test_sources": BASE["id_sources"], "split": {"test_fraction": 0.2}}, "split.test_fraction"),
    ],
)
def test_invalid_value_names_key(tmp_path: Path, extra: dict, key: str) -> None:
    raw = {key_: value for key_, value in {**BASE, **extra}.items() if value is not None}
    with pytest.raises(DataConfigError) as caught:
        parse_dataset_config(raw, path=tmp_path / "bad.yaml")
    assert key in str(caught.value)
    assert "bad.yaml" in str(caught.value)


def test_invalid_yaml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id_sources: [unclosed\n", encoding="utf-8")
    with pytest.raises(DataConfigError, match="broken.yaml"):
        load_dataset_config(path)


def test_image_size_height_width(tmp_path: Path) -> None:
    config = parse_dataset_config({**BASE, "image_size": [48, 64]}, path=tmp_path / "c.yaml")
    assert config.image_size == (48, 64)


def test_mask_tolerance_forms(tmp_path: Path) -> None:
    short = parse_dataset_config({**BASE, "mask_tolerance": 0.2}, path=tmp_path / "c.yaml")
    full = parse_dataset_config(
        {**BASE, "mask_tolerance": {"value": 0.2, "max_fraction": 0.05}}, path=tmp_path / "c.yaml"
    )
    assert short.mask_rule.tolerance == 0.2
    assert full.mask_rule.max_unclean_fraction == 0.05


def test_shipped_presets_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LESION_STUDY_DATA", str(tmp_path))
    names = shipped_presets()
    assert {"kvasir_seg", "fuseg", "cvc_clinicdb", "csv_list", "kvasir_to_cvc"} <= set(names)
    for name in names:
        config = load_dataset_config(name)
        assert config.name == name
        assert config.id_sources


def test_cross_dataset_preset_uses_own_test_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LESION_STUDY_DATA", str(tmp_path))
    config = load_dataset_config("kvasir_to_cvc")
    assert config.split.test_fraction == 0.0
    assert config.split_sources["id_test"][0].preset == "cvc_clinicdb"


# Checking and splitting.


def test_clean_dataset_checks_ok(tmp_path: Path) -> None:
    report = check_dataset(load_dataset_config(make_dataset(tmp_path)))
    assert report.ok, report.format()
    assert report.counts == {"train": 12, "id_val": 4, "id_test": 4, "ood_val": 5, "ood_test": 5}
    assert report.foreground["train"] == pytest.approx(0.25)  # 16x16 of 32x32
    assert report.sizes["train"] == {(SIDE, SIDE): 12}
    assert any("has only" in warning for warning in report.warnings)  # every split is tiny


def test_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    path = make_dataset(tmp_path, n_id=30)
    first = build_bundle(load_dataset_config(path), use_cache=False)
    second = build_bundle(load_dataset_config(path), use_cache=False)
    names = {split: first.splits[split].names for split in SPLITS}
    assert names == {split: second.splits[split].names for split in SPLITS}
    id_names = names["train"] + names["id_val"] + names["id_test"]
    assert len(id_names) == len(set(id_names)) == 30


def test_seed_changes_membership(tmp_path: Path) -> None:
    path = make_dataset(tmp_path, n_id=30)
    base = build_bundle(load_dataset_config(path), use_cache=False)
    other_path = make_dataset(tmp_path, n_id=30, extra={"split": {"seed": 1}})
    other = build_bundle(load_dataset_config(other_path), use_cache=False)
    assert base.splits["id_val"].names != other.splits["id_val"].names


def test_duplicate_images_stay_in_one_split(tmp_path: Path) -> None:
    path = make_dataset(tmp_path, n_id=30)
    images = tmp_path / "lesions" / "images"
    for index in range(1, 6):  # five copies of image 000, each with its own mask
        shutil.copy(images / "000.png", images / f"copy{index}.png")
        write_mask(tmp_path / "lesions" / "masks" / f"copy{index}.png")
    report = check_dataset(load_dataset_config(path))
    assert report.ok, report.format()
    assert any("1 groups of byte-identical images" in warning for warning in report.warnings)
    bundle = build_bundle(load_dataset_config(path), use_cache=False)
    holding = [split for split in SPLITS if "lesions/images/000.png" in bundle.splits[split].names]
    copies = [split for split in SPLITS for n in bundle.splits[split].names if "copy" in n]
    assert set(copies) == set(holding)


def test_folds_partition_pool(tmp_path: Path) -> None:
    make_dataset(tmp_path, n_id=25)
    validation: list[str] = []
    tests = set()
    for fold in range(5):
        path = make_dataset(tmp_path, n_id=25, extra={"split": {"folds": 5, "fold": fold, "test_fraction": 0.2}})
        bundle = build_bundle(load_dataset_config(path), use_cache=False)
        validation.extend(bundle.splits["id_val"].names)
        tests.add(tuple(bundle.splits["id_test"].names))
        assert len(bundle.splits["id_val"]) == 4
        assert set(bundle.splits["id_val"].names).isdisjoint(bundle.splits["train"].names)
    assert len(tests) == 1  # the test split does not depend on the fold
    assert len(validation) == len(set(validation)) == 20


def test_split_files(tmp_path: Path) -> None:
    names = [f"lesions/images/{index:03d}.png" for index in range(6)]
    lists = {"train": names[:3], "id_val": names[3:5], "id_test": names[5:]}
    for split, listed in lists.items():
        (tmp_path / f"{split}.txt").write_text("# image paths\n" + "\n".join(listed) + "\n", encoding="utf-8")
    files = {split: f"{split}.txt" for split in lists}
    path = make_dataset(tmp_path, n_id=6, extra={"split": {"files": files}})
    bundle = build_bundle(load_dataset_config(path), use_cache=False)
    assert bundle.splits["train"].names == names[:3]
    assert bundle.splits["id_test"].names == names[5:]
    assert bundle.summary()["ood_val"] == 5


def test_split_file_unknown_name(tmp_path: Path) -> None:
    for split in ("train", "id_val", "id_test"):
        (tmp_path / f"{split}.txt").write_text("lesions/images/999.png\n", encoding="utf-8")
    files = {split: f"{split}.txt" for split in ("train", "id_val", "id_test")}
    report = check_dataset(load_dataset_config(make_dataset(tmp_path, n_id=3, extra={"split": {"files": files}})))
    assert any("train.txt line 1" in error and "999.png" in error for error in report.errors)


def test_csv_layout(tmp_path: Path) -> None:
    make_dataset(tmp_path, n_id=8)
    rows = "\n".join(f"../lesions/images/{i:03d}.png,../lesions/masks/{i:03d}.png" for i in range(8))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "pairs.csv").write_text("image_path,mask_path\n" + rows + "\n", encoding="utf-8")
    (tmp_path / "lists" / "free.csv").write_text(
        "image_path\n" + "\n".join(f"../healthy/h{i:03d}.png" for i in range(4)) + "\n", encoding="utf-8"
    )
    path = write_config(
        tmp_path / "csv.yaml",
        {
            "id_sources": [{"layout": "csv", "csv": "lists/pairs.csv"}],
            "ood_sources": [{"layout": "csv", "csv": "lists/free.csv"}],
            "image_size": 16,
        },
    )
    bundle = build_bundle(load_dataset_config(path), use_cache=False)
    assert sum(len(bundle.splits[s]) for s in ("train", "id_val", "id_test")) == 8
    assert bundle.summary()["ood_val"] + bundle.summary()["ood_test"] == 4
    assert "lesions/images/000.png" in sum((bundle.splits[s].names for s in SPLITS), [])


def test_csv_missing_column(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text("image,mask\na.png,b.png\n", encoding="utf-8")
    path = make_dataset(tmp_path, extra={"id_sources": [{"layout": "csv", "csv": "pairs.csv"}]})
    report = check_dataset(load_dataset_config(path))
    assert any("pairs.csv" in error and "image_path" in error for error in report.errors)


@pytest.mark.parametrize("mask_folder", ["labels", "masks"])
def test_fuseg_preset_accepts_labels_or_masks(tmp_path: Path, mask_folder: str) -> None:
    for index in range(6):
        write_image(tmp_path / "fu" / "images" / f"{index:04d}.png", seed=index)
        write_mask(tmp_path / "fu" / mask_folder / f"{index:04d}.png")
    write_mask(tmp_path / "fu" / "excluded_empty_masks" / "masks" / "0099.png", lesion=False)
    path = make_dataset(tmp_path, n_id=0, extra={"id_sources": [{"preset": "fuseg", "path": "fu"}]})
    report = check_dataset(load_dataset_config(path))
    assert report.ok, report.format()
    assert report.counts["train"] + report.counts["id_val"] + report.counts["id_test"] == 6


def test_cvc_preset_reads_tiff(tmp_path: Path) -> None:
    (tmp_path / "cvc" / "Original").mkdir(parents=True)
    (tmp_path / "cvc" / "Ground Truth").mkdir(parents=True)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[4:20, 4:20] = 255
    for index in range(1, 6):
        pixels = np.random.default_rng(index).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        tifffile.imwrite(tmp_path / "cvc" / "Original" / f"{index}.tif", pixels)
        tifffile.imwrite(tmp_path / "cvc" / "Ground Truth" / f"{index}.tif", mask)
    path = make_dataset(tmp_path, n_id=0, extra={"id_sources": [{"preset": "cvc_clinicdb", "path": "cvc"}]})
    report = check_dataset(load_dataset_config(path))
    assert report.ok, report.format()
    assert report.foreground["train"] == pytest.approx(0.25)


def test_cross_dataset_test_sources(tmp_path: Path) -> None:
    for index in range(5):
        write_image(tmp_path / "other" / "images" / f"o{index}.png", seed=500 + index)
        write_mask(tmp_path / "other" / "masks" / f"o{index}.png")
    other = [{"layout": "folders", "images": "other/images", "masks": "other/masks"}]
    path = make_dataset(tmp_path, extra={"id_test_sources": other, "split": {"val_fraction": 0.25}})
    bundle = build_bundle(load_dataset_config(path), use_cache=False)
    assert bundle.splits["id_test"].names == [f"other/images/o{index}.png" for index in range(5)]
    assert bundle.summary()["train"] == 15
    assert bundle.summary()["id_val"] == 5


# Broken datasets: each problem names its file.


def break_mid_grey(root: Path) -> tuple[str, str]:
    write_mask(root / "lesions" / "masks" / "003.png", value=128)
    return "non-binary mask", "003.png"


def break_size(root: Path) -> tuple[str, str]:
    write_mask(root / "lesions" / "masks" / "004.png", size=(SIDE, SIDE + 8))
    return "size mismatch", "004.png"


def break_missing_mask(root: Path) -> tuple[str, str]:
    (root / "lesions" / "masks" / "005.png").unlink()
    return "missing mask", "005.png"


def break_unreadable_image(root: Path) -> tuple[str, str]:
    (root / "lesions" / "images" / "006.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return "unreadable image", "006.png"


def break_unreadable_mask(root: Path) -> tuple[str, str]:
    (root / "lesions" / "masks" / "007.png").write_bytes(b"")
    return "unreadable mask", "007.png"


def break_empty_mask(root: Path) -> tuple[str, str]:
    write_mask(root / "lesions" / "masks" / "008.png", lesion=False)
    return "empty mask", "008.png"


def break_duplicate(root: Path) -> tuple[str, str]:
    shutil.copy(root / "lesions" / "images" / "009.png", root / "healthy" / "dup009.png")
    return "identical image bytes", "dup009.png"


def break_ambiguous_stem(root: Path) -> tuple[str, str]:
    write_image(root / "lesions" / "images" / "010.jpg", seed=77)
    return "ambiguous", "010.jpg"


BREAKERS = [
    break_mid_grey,
    break_size,
    break_missing_mask,
    break_unreadable_image,
    break_unreadable_mask,
    break_empty_mask,
    break_duplicate,
    break_ambiguous_stem,
]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda breaker: breaker.__name__)
def test_broken_file_reported_by_name(tmp_path: Path, breaker) -> None:
    path = make_dataset(tmp_path)
    kind, file_name = breaker(tmp_path)
    report = check_dataset(load_dataset_config(path))
    assert not report.ok
    matching = [error for error in report.errors if kind in error and file_name in error]
    assert matching, report.format(max_items=None)


def test_empty_mask_suggests_lesion_free_sources(tmp_path: Path) -> None:
    path = make_dataset(tmp_path)
    break_empty_mask(tmp_path)
    report = check_dataset(load_dataset_config(path))
    assert any("ood_sources" in error for error in report.errors)


def test_zero_one_mask_hint(tmp_path: Path) -> None:
    path = make_dataset(tmp_path)
    write_mask(tmp_path / "lesions" / "masks" / "002.png", value=1)
    report = check_dataset(load_dataset_config(path))
    assert any("002.png" in error and "max_value: 1" in error for error in report.errors)


def test_mask_without_image_is_warning(tmp_path: Path) -> None:
    path = make_dataset(tmp_path)
    write_mask(tmp_path / "lesions" / "masks" / "orphan.png")
    report = check_dataset(load_dataset_config(path))
    assert report.ok
    assert any("mask without image" in warning and "orphan.png" in warning for warning in report.warnings)


def test_no_lesion_free_validation_images(tmp_path: Path) -> None:
    path = make_dataset(tmp_path, n_ood=1)  # 0.5 of one image rounds to none for ood_val
    report = check_dataset(load_dataset_config(path))
    assert any("split ood_val has no images" in error for error in report.errors)


def test_lesion_vanishing_at_network_size(tmp_path: Path) -> None:
    path = make_dataset(tmp_path)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[1, 1] = 255  # one pixel; 4x nearest-neighbour downsampling samples other pixels
    Image.fromarray(mask).save(tmp_path / "lesions" / "masks" / "011.png")
    report = check_dataset(load_dataset_config(path), image_size=8)
    assert any("vanishes" in error and "011.png" in error for error in report.errors)


def make_broken_dataset(root: Path) -> tuple[Path, list[tuple[str, str]]]:
    path = make_dataset(root)
    expected = [breaker(root) for breaker in BREAKERS]
    return path, expected


def test_every_problem_listed(tmp_path: Path) -> None:
    path, expected = make_broken_dataset(tmp_path)
    write_mask(tmp_path / "lesions" / "masks" / "orphan.png")
    report = check_dataset(load_dataset_config(path))
    for kind, file_name in expected:
        assert any(kind in error and file_name in error for error in report.errors), (kind, file_name)
    assert any("orphan.png" in warning for warning in report.warnings)


def test_cli_exits_nonzero_on_broken_dataset(tmp_path: Path) -> None:
    path, expected = make_broken_dataset(tmp_path)
    result = run_cli("check", "--data", str(path))
    assert result.returncode == 1, result.stderr
    for _, file_name in expected:
        assert file_name in result.stdout


def test_cli_ok_and_image_size(tmp_path: Path) -> None:
    result = run_cli("check", "--data", str(make_dataset(tmp_path)), "--image-size", "16")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "network input 16x16" in result.stdout
    assert "train" in result.stdout


def test_cli_bad_config_exits_2(tmp_path: Path) -> None:
    path = make_dataset(tmp_path, extra={"colour": "red"})
    result = run_cli("check", "--data", str(path))
    assert result.returncode == 2
    assert "colour" in result.stderr


def test_cli_data_root(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data")
    config = write_config(
        tmp_path / "cfg" / "data.yaml",
        {
            "root": "${NOT_SET_ANYWHERE}",
            "id_sources": [{"layout": "folders", "images": "lesions/images", "masks": "lesions/masks"}],
            "ood_sources": [{"layout": "folder", "images": "healthy"}],
        },
    )
    result = run_cli("check", "--data", str(config), "--data-root", str(tmp_path / "data"), "--image-size", "16")
    assert result.returncode == 0, result.stdout + result.stderr


# Building bundles.


def test_build_bundle_shapes(tmp_path: Path) -> None:
    bundle = build_bundle(load_dataset_config(make_dataset(tmp_path)), image_size=16, cache_dir=tmp_path / "cache")
    assert bundle.summary() == {"train": 12, "id_val": 4, "id_test": 4, "ood_val": 5, "ood_test": 5}
    for split in SPLITS:
        assert bundle.splits[split].images.shape[1:] == (16, 16, 3)
        assert bundle.splits[split].images.dtype == np.uint8
        assert set(np.unique(bundle.splits[split].masks).tolist()) <= {0, 1}
    assert bundle.splits["train"].masks.sum() == 12 * 64  # 8x8 lesions after 2x downsampling
    assert not bundle.splits["ood_test"].masks.any()


def test_original_masks_only_when_resized(tmp_path: Path) -> None:
    config = load_dataset_config(make_dataset(tmp_path))
    resized = build_bundle(config, image_size=16, use_cache=False)
    assert resized.splits["train"].original_masks is None
    assert resized.splits["id_val"].original_masks[0].shape == (SIDE, SIDE)
    assert resized.splits["id_val"].original_masks[0].sum() == 256
    assert resized.splits["ood_val"].original_masks[0].shape == (SIDE, SIDE)
    same = build_bundle(config, image_size=SIDE, use_cache=False)
    assert all(same.splits[split].original_masks is None for split in SPLITS)


def test_cache_hit_returns_same_arrays(tmp_path: Path) -> None:
    config = load_dataset_config(make_dataset(tmp_path))
    first = build_bundle(config, image_size=16, cache_dir=tmp_path / "cache")
    second = build_bundle(config, image_size=16, cache_dir=tmp_path / "cache")
    assert isinstance(second.splits["train"].images, np.memmap)  # loaded, not decoded
    assert second.content_hash == first.content_hash
    assert second.warnings == first.warnings
    for split in SPLITS:
        np.testing.assert_array_equal(np.asarray(second.splits[split].images), first.splits[split].images)
        np.testing.assert_array_equal(np.asarray(second.splits[split].masks), first.splits[split].masks)
        assert second.splits[split].names == first.splits[split].names
    for ours, theirs in zip(first.splits["id_val"].original_masks, second.splits["id_val"].original_masks):
        np.testing.assert_array_equal(ours, theirs)
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_cache_env_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LESION_STUDY_CACHE", str(tmp_path / "env_cache"))
    bundle = build_bundle(load_dataset_config(make_dataset(tmp_path)), image_size=16)
    assert (tmp_path / "env_cache" / bundle.content_hash / "index.json").is_file()


def test_use_cache_false_writes_nothing(tmp_path: Path) -> None:
    build_bundle(load_dataset_config(make_dataset(tmp_path)), image_size=16, cache_dir=tmp_path / "c", use_cache=False)
    assert not (tmp_path / "c").exists()


def test_content_hash_tracks_size_and_files(tmp_path: Path) -> None:
    path = make_dataset(tmp_path)
    base = build_bundle(load_dataset_config(path), image_size=16, use_cache=False).content_hash
    other_size = build_bundle(load_dataset_config(path), image_size=8, use_cache=False).content_hash
    assert other_size != base

    image = tmp_path / "lesions" / "images" / "000.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = build_bundle(load_dataset_config(path), image_size=16, use_cache=False).content_hash
    assert touched != base


def test_build_raises_with_first_offenders_and_count(tmp_path: Path) -> None:
    path = make_dataset(tmp_path)
    for index in range(12):
        write_mask(tmp_path / "lesions" / "masks" / f"{index:03d}.png", lesion=False)
    with pytest.raises(DataCheckError) as caught:
        build_bundle(load_dataset_config(path), use_cache=False)
    message = str(caught.value)
    assert "12 errors" in message
    assert "000.png" in message
    assert "and 2 more" in message
    assert len(caught.value.report.errors) == 12


def test_build_raises_on_listing_errors(tmp_path: Path) -> None:
    path = make_dataset(tmp_path)
    break_missing_mask(tmp_path)
    with pytest.raises(DataCheckError, match="005.png"):
        build_bundle(load_dataset_config(path), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_missing_mask_folder_reported_once(tmp_path: Path) -> None:
    path = make_dataset(tmp_path)
    shutil.rmtree(tmp_path / "lesions" / "masks")
    report = check_dataset(load_dataset_config(path))
    assert [error for error in report.errors if "masks" in error] == [
        f"id_sources[0].masks: folder {(tmp_path / 'lesions' / 'masks').resolve()} not found"
    ]
