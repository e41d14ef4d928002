"""Dataset check: list every file, split the pools, decode everything, collect every problem.

The check runs before any trial. Instead of raising on a data problem, it records each one with the
file it concerns, so one run shows the whole list (``check_dataset`` raises only on an invalid
``image_size`` argument). ``build_bundle`` runs the same steps and stops
with ``DataCheckError`` when any error was found.

Errors: missing or unreadable files, a mask without its image's size, a non-binary mask, an empty
mask (or a lesion that vanishes at network size) in an in-distribution split, the same image
bytes in two splits, no train / id_val / ood_val images. Warnings: masks without an image, files
with other extensions, duplicates inside one split, images listed in no split file, tiny splits.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from study.data.bundle import ID_SPLITS, OOD_SPLITS, SPLITS, Split
from study.data.config import LAYOUT_PRESETS, DatasetConfig, Source
from study.data.readers import (
    IMAGE_SUFFIXES,
    MaskError,
    ReadError,
    read_array,
    read_image,
    read_mask,
    resize_mask,
)

# Below this many images one image moves a rate by more than 5 percentage points.
TINY_SPLIT = 20
# Splits the search and training cannot run without.
REQUIRED_SPLITS = ("train", "id_val", "ood_val")
EVALUATION_SPLITS = ("id_val", "id_test", "ood_val", "ood_test")
MAX_EXAMPLES = 3


class DataCheckError(ValueError):
    """Error raised when the dataset check finds problems; ``report`` contains all of them."""

    def __init__(self, report: DataCheckReport, max_items: int = 10) -> None:
        self.report = report
        shown = "\n".join(f"  - {error}" for error in report.errors[:max_items])
        more = len(report.errors) - max_items
        tail = f"\n  ... and {more} more" if more > 0 else ""
        height, width = report.image_size
        size = f" --image-size {height}" if height == width else ""
        command = (
            f"python -m study.data check --data {report.config_path} --data-root {report.root}{size}"
            if report.config_path
            else ""
        )
        hint = f"\nRun `{command}` to list every problem." if command else ""
        super().__init__(
            f"dataset check failed for {report.name}: {len(report.errors)} errors\n{shown}{tail}{hint}"
        )


@dataclass(frozen=True)
class Sample:
    """One image and, for in-distribution sources, its mask.

    Attributes:
        name: the image path relative to the config's root (absolute when outside it).
        image, mask: absolute file paths; mask is None for lesion-free images.
        origin: the config entry that listed it, e.g. "id_sources[0]".
    """

    name: str
    image: Path
    mask: Path | None
    origin: str


@dataclass
class DataCheckReport:
    """Result of a dataset check: counts, sizes, foreground fractions and problems by file."""

    name: str
    config_path: Path | None
    root: Path
    image_size: tuple[int, int]
    counts: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, Counter] = field(default_factory=dict)
    foreground: dict[str, float | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary_lines(self) -> list[str]:
        """Return one header line, one line per split and a problem count line."""
        height, width = self.image_size
        lines = [
            f"dataset {self.name} (config {self.config_path}, root {self.root})",
            f"network input {height}x{width}",
            f"{'split':<9} {'images':>6}  {'foreground':>10}  sizes seen (HxW: count)",
        ]
        for split in SPLITS:
            fraction = self.foreground.get(split)
            shown = "-" if fraction is None else f"{fraction:.3f}"
            sizes = ", ".join(f"{h}x{w}: {n}" for (h, w), n in sorted(self.sizes.get(split, {}).items()))
            lines.append(f"{split:<9} {self.counts.get(split, 0):>6}  {shown:>10}  {sizes or '-'}")
        lines.append(f"{len(self.errors)} errors, {len(self.warnings)} warnings")
        return lines

    def format(self, max_items: int | None = 10) -> str:
        """Return the summary followed by the problems, at most ``max_items`` of each kind."""
        lines = self.summary_lines()
        for title, items in (("errors", self.errors), ("warnings", self.warnings)):
            if not items:
                continue
            lines.append(f"{title}:")
            shown = items if max_items is None else items[:max_items]
            lines.extend(f"  - {item}" for item in shown)
            if len(items) > len(shown):
                lines.append(f"  ... and {len(items) - len(shown)} more")
        return "\n".join(lines)


@dataclass
class DatasetPlan:
    """Every split's samples, the SHA-256 of every listed file, and the listing problems."""

    splits: dict[str, list[Sample]]
    digests: dict[Path, str]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def network_size(config: DatasetConfig, image_size: int | None) -> tuple[int, int]:
    """Return (H, W) of the network input: ``image_size`` squared if given, else the config's."""
    if image_size is None:
        return config.image_size
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer of at least 8 pixels, got {image_size!r}")
    return (image_size, image_size)


def check_dataset(config: DatasetConfig, image_size: int | None = None) -> DataCheckReport:
    """Run every check on ``config`` at the network size and return the report.

    Data problems land in the report; only a bad ``image_size`` argument raises.
    """
    size = network_size(config, image_size)
    plan = plan_dataset(config)
    report, _ = inspect_plan(plan, config, size, keep_arrays=False)
    return report


# Listing files.


def plan_dataset(config: DatasetConfig) -> DatasetPlan:
    """List every source, hash every file, and divide the pools into the five splits."""
    plan = DatasetPlan(splits={split: [] for split in SPLITS}, digests={})
    id_pool = _list_sources(config.id_sources, config.root, plan)
    ood_pool = _list_sources(config.ood_sources, config.root, plan)
    own = {
        split: _list_sources(sources, config.root, plan) for split, sources in config.split_sources.items()
    }
    _hash_files([*id_pool, *ood_pool, *(s for samples in own.values() for s in samples)], plan)

    _split_pools(config, id_pool, ood_pool, plan)
    for split, samples in own.items():
        plan.splits[split].extend(samples)
    _check_duplicates(plan)
    _check_split_sizes(plan)
    return plan


def sample_name(path: Path, root: Path) -> str:
    """Return ``path`` relative to ``root`` in POSIX form, or the absolute path outside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _list_sources(sources: tuple[Source, ...], root: Path, plan: DatasetPlan) -> list[Sample]:
    samples: list[Sample] = []
    for source in sources:
        if source.layout == "csv":
            samples.extend(_list_csv(source, root, plan))
        elif source.layout == "folder":
            images = _image_files(source.images, f"{source.origin}.images", plan)
            samples.extend(Sample(sample_name(p, root), p, None, source.origin) for p in images)
        else:
            samples.extend(_list_paired_folders(source, root, plan))
    return samples


def _image_files(folder: Path, key: str, plan: DatasetPlan) -> list[Path]:
    if not folder.is_dir():
        plan.errors.append(f"{key}: folder {folder} not found")
        return []
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as error:
        plan.errors.append(f"{key}: cannot list folder {folder}: {error}")
        return []
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    others = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        plan.warnings.append(
            f"{key}: skipped {len(others)} files in {folder} whose extension is not one of "
            f"{', '.join(sorted(IMAGE_SUFFIXES))} (e.g. {', '.join(others[:MAX_EXAMPLES])})"
        )
    if not images:
        plan.errors.append(f"{key}: no image files in {folder}")
    return images


def _list_paired_folders(source: Source, root: Path, plan: DatasetPlan) -> list[Sample]:
    images_dir, masks_dir = source.images, source.masks
    if source.layout == "preset":
        images_dir, masks_dir = _preset_folders(source, plan)
        if masks_dir is None:
            return []

    images = _image_files(images_dir, f"{source.origin}.images", plan)
    if not images:
        return []
    if not masks_dir.is_dir():
        # One error for the folder instead of one "missing mask" per image.
        plan.errors.append(f"{source.origin}.masks: folder {masks_dir} not found")
        return []
    masks = _image_files(masks_dir, f"{source.origin}.masks", plan)
    masks_by_stem = _by_stem(masks, source.mask_suffix, f"{source.origin}.masks", plan)
    images_by_stem = _by_stem(images, "", f"{source.origin}.images", plan)

    samples = []
    for stem, image in images_by_stem.items():
        mask = masks_by_stem.get(stem)
        if mask is None:
            plan.errors.append(
                f"missing mask for image {image}: expected {masks_dir}/{stem}{source.mask_suffix}.<ext>"
            )
            continue
        samples.append(Sample(sample_name(image, root), image, mask, source.origin))
    orphans = [masks_by_stem[stem] for stem in masks_by_stem if stem not in images_by_stem]
    for mask in orphans:
        plan.warnings.append(f"mask without image (ignored): {mask}")
    return samples


def _preset_folders(source: Source, plan: DatasetPlan) -> tuple[Path, Path | None]:
    preset = LAYOUT_PRESETS[source.preset]
    images = source.images / preset.images
    candidates = [source.images / name for name in preset.masks]
    present = [folder for folder in candidates if folder.is_dir()]
    if not present:
        expected = " or ".join(str(folder) for folder in candidates)
        plan.errors.append(
            f"{source.origin}: preset {preset.name} expects a mask folder {expected}, but none exists"
        )
        return images, None
    if len(present) > 1:
        plan.warnings.append(
            f"{source.origin}: preset {preset.name} found both {present[0]} and {present[1]}; using the first"
        )
    return images, present[0]


def _by_stem(files: list[Path], suffix: str, key: str, plan: DatasetPlan) -> dict[str, Path]:
    by_stem: dict[str, Path] = {}
    for path in files:
        stem = path.stem
        if suffix:
            if not stem.endswith(suffix):
                plan.warnings.append(f"{key}: {path} does not end with mask_suffix {suffix!r}; ignored")
                continue
            stem = stem[: -len(suffix)]
        if stem in by_stem:
            plan.errors.append(
                f"{key}: {by_stem[stem]} and {path} share the stem {stem!r}, so pairing is ambiguous; "
                "remove or rename one"
            )
            continue
        by_stem[stem] = path
    return by_stem


def _list_csv(source: Source, root: Path, plan: DatasetPlan) -> list[Sample]:
    columns = ("image_path", "mask_path") if source.has_masks else ("image_path",)
    try:
        with open(source.csv, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        plan.errors.append(f"{source.origin}: cannot read list file {source.csv}: {error}")
        return []
    missing = [column for column in columns if column not in header]
    if not rows or missing:
        plan.errors.append(
            f"{source.origin}: list file {source.csv} needs a header row with {', '.join(columns)} "
            f"and at least one row; missing columns: {', '.join(missing) or 'none'}"
        )
        return []

    samples = []
    for line, row in enumerate(rows, start=2):
        paths = [_csv_path(source.csv, row.get(column), line, column, plan) for column in columns]
        if None in paths:
            continue
        mask = paths[1] if source.has_masks else None
        samples.append(Sample(sample_name(paths[0], root), paths[0], mask, source.origin))
    return samples


def _csv_path(csv_file: Path, value: str | None, line: int, column: str, plan: DatasetPlan) -> Path | None:
    if not value or not value.strip():
        kind = "missing mask" if column == "mask_path" else "missing image"
        plan.errors.append(f"{kind}: {csv_file} line {line} has an empty {column}")
        return None
    path = (csv_file.parent / value.strip()).resolve()
    if not path.is_file():
        kind = "missing mask" if column == "mask_path" else "missing image"
        plan.errors.append(f"{kind}: {path} (from {csv_file} line {line}, {column}) not found")
        return None
    return path


def _hash_files(samples: list[Sample], plan: DatasetPlan) -> None:
    paths = {path for sample in samples for path in (sample.image, sample.mask) if path is not None}
    for path in sorted(paths):
        try:
            plan.digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as error:
            plan.errors.append(f"unreadable file {path}: {error}")


# Splitting.


def _split_pools(
    config: DatasetConfig, id_pool: list[Sample], ood_pool: list[Sample], plan: DatasetPlan
) -> None:
    spec = config.split
    if spec.files:
        _split_from_files(spec.files, id_pool, ("train", "id_val", "id_test"), plan)
        if "ood_val" in spec.files:
            _split_from_files(spec.files, ood_pool, ("ood_val", "ood_test"), plan)
    elif spec.folds is not None:
        test, rest = _take_fraction(id_pool, spec.test_fraction, spec.seed, plan.digests)
        plan.splits["id_test"].extend(test)
        val, train = _take_fold(rest, spec.folds, spec.fold, spec.seed, plan.digests)
        plan.splits["id_val"].extend(val)
        plan.splits["train"].extend(train)
    else:
        test, rest = _take_fraction(id_pool, spec.test_fraction, spec.seed, plan.digests)
        remaining_val = spec.val_fraction / (1 - spec.test_fraction)
        val, train = _take_fraction(rest, remaining_val, spec.seed + 1, plan.digests)
        plan.splits["id_test"].extend(test)
        plan.splits["id_val"].extend(val)
        plan.splits["train"].extend(train)

    if not (spec.files and "ood_val" in spec.files):
        ood_spec = config.ood_split
        ood_val, ood_test = _take_fraction(ood_pool, ood_spec.val_fraction, ood_spec.seed, plan.digests)
        plan.splits["ood_val"].extend(ood_val)
        plan.splits["ood_test"].extend(ood_test)


def _groups(samples: list[Sample], digests: dict[Path, str], seed: int) -> list[list[Sample]]:
    """Group byte-identical images so no split boundary runs through a group; shuffle the groups."""
    by_digest: dict[str, list[Sample]] = defaultdict(list)
    for sample in sorted(samples, key=lambda s: s.name):
        by_digest[digests.get(sample.image, sample.name)].append(sample)
    groups = sorted(by_digest.values(), key=lambda group: group[0].name)
    order = np.random.default_rng(seed).permutation(len(groups))
    return [groups[i] for i in order]


def _take_fraction(
    samples: list[Sample], fraction: float, seed: int, digests: dict[Path, str]
) -> tuple[list[Sample], list[Sample]]:
    """Split off about ``fraction`` of ``samples`` (whole duplicate groups) at random."""
    target = round(fraction * len(samples))
    taken: list[Sample] = []
    rest: list[Sample] = []
    for group in _groups(samples, digests, seed):
        (taken if len(taken) < target else rest).extend(group)
    return taken, rest


def _take_fold(
    samples: list[Sample], folds: int, fold: int, seed: int, digests: dict[Path, str]
) -> tuple[list[Sample], list[Sample]]:
    """Deal shuffled groups into ``folds`` folds, smallest fold first; return (fold, the others)."""
    members: list[list[Sample]] = [[] for _ in range(folds)]
    for group in _groups(samples, digests, seed):
        smallest = min(range(folds), key=lambda index: len(members[index]))
        members[smallest].extend(group)
    others = [sample for index in range(folds) if index != fold for sample in members[index]]
    return members[fold], others


def _split_from_files(
    files: dict[str, Path], pool: list[Sample], splits: tuple[str, ...], plan: DatasetPlan
) -> None:
    by_name = {sample.name: sample for sample in pool}
    listed: set[str] = set()
    for split in splits:
        if split not in files:
            continue
        try:
            lines = files[split].read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            plan.errors.append(f"cannot read split file {files[split]} for {split}: {error}")
            continue
        for number, line in enumerate(lines, start=1):
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            sample = by_name.get(name)
            if sample is None:
                plan.errors.append(
                    f"split file {files[split]} line {number}: {name!r} is not among the listed "
                    "images; names are image paths relative to the config's root"
                )
                continue
            listed.add(name)
            plan.splits[split].append(sample)
    unlisted = sorted(set(by_name) - listed)
    if unlisted:
        plan.warnings.append(
            f"{len(unlisted)} images are listed in no split file for {', '.join(splits)} and are unused "
            f"(e.g. {', '.join(unlisted[:MAX_EXAMPLES])})"
        )


# Split-level checks.


def _check_duplicates(plan: DatasetPlan) -> None:
    # NOTE: duplicates are found by file bytes, so one picture saved twice with different
    # encodings (or re-compressed) is not caught.
    where: dict[str, list[tuple[str, Sample]]] = defaultdict(list)
    for split, samples in plan.splits.items():
        for sample in samples:
            if sample.image in plan.digests:
                where[plan.digests[sample.image]].append((split, sample))

    within = 0
    for entries in where.values():
        splits = sorted({split for split, _ in entries}, key=SPLITS.index)
        if len(splits) > 1:
            files = ", ".join(f"{sample.image} ({split})" for split, sample in entries)
            plan.errors.append(
                f"identical image bytes in splits {', '.join(splits)}: {files}; keep one copy or "
                "put them in the same split"
            )
        elif len(entries) > 1:
            within += 1
    if within:
        plan.warnings.append(f"{within} groups of byte-identical images, each kept inside one split")


def _check_split_sizes(plan: DatasetPlan) -> None:
    for split in SPLITS:
        count = len(plan.splits[split])
        if count == 0 and split in REQUIRED_SPLITS:
            fix = "add lesion-free sources" if split in OOD_SPLITS else "add images or raise its fraction"
            plan.errors.append(f"split {split} has no images; {fix}")
        elif count == 0:
            plan.warnings.append(f"split {split} has no images, so nothing is reported for it")
        elif count < TINY_SPLIT:
            plan.warnings.append(
                f"split {split} has only {count} images; one image moves its rates by "
                f"{100 / count:.0f} percentage points"
            )


# Decoding.


@dataclass
class _Decoded:
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    original_mask: np.ndarray | None = None
    original_size: tuple[int, int] | None = None
    foreground: float | None = None
    errors: list[str] = field(default_factory=list)


def inspect_plan(
    plan: DatasetPlan, config: DatasetConfig, size: tuple[int, int], keep_arrays: bool
) -> tuple[DataCheckReport, dict[str, Split] | None]:
    """Decode every sample of ``plan`` at ``size`` and collect statistics and problems.

    Returns:
        The report, and the splits (None unless ``keep_arrays`` and no error was found).
    """
    report = DataCheckReport(
        name=config.name,
        config_path=config.path,
        root=config.root,
        image_size=size,
        errors=list(plan.errors),
        warnings=list(plan.warnings),
    )
    workers = min(8, os.cpu_count() or 1)
    decoded: dict[str, list[_Decoded]] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for split in SPLITS:
            samples = plan.splits[split]
            decoded[split] = list(
                pool.map(lambda sample: _decode(sample, split, size, config), samples)
            )

    for split in SPLITS:
        results = decoded[split]
        report.counts[split] = len(results)
        report.sizes[split] = Counter(r.original_size for r in results if r.original_size)
        fractions = [r.foreground for r in results if r.foreground is not None]
        report.foreground[split] = float(np.mean(fractions)) if fractions and split in ID_SPLITS else None
        for result in results:
            report.errors.extend(result.errors)

    if not keep_arrays or not report.ok:
        return report, None
    return report, {split: _to_split(plan.splits[split], decoded[split], split, size) for split in SPLITS}


def _decode(sample: Sample, split: str, size: tuple[int, int], config: DatasetConfig) -> _Decoded:
    result = _Decoded()
    try:
        result.image, result.original_size = read_image(sample.image, size)
    except ReadError as error:
        result.errors.append(f"unreadable image: {error}")
        return result

    if sample.mask is None:
        result.mask = np.zeros(size, dtype=np.uint8)
        if split in EVALUATION_SPLITS:
            result.original_mask = np.zeros(result.original_size, dtype=np.uint8)
        return result

    try:
        mask = read_mask(sample.mask, config.mask_rule)
    except ReadError as error:
        result.errors.append(f"unreadable mask: {error}")
        return result
    except MaskError as error:
        result.errors.append(f"non-binary mask: {error}")
        return result
    if mask.shape != result.original_size:
        result.errors.append(
            f"size mismatch: image {sample.image} is {_hxw(result.original_size)} but its mask "
            f"{sample.mask} is {_hxw(mask.shape)}"
        )
        return result

    result.foreground = float(mask.mean())
    result.mask = resize_mask(mask, size)
    if split in EVALUATION_SPLITS:
        result.original_mask = mask
    if split in ID_SPLITS and result.foreground == 0:
        result.errors.append(
            f"empty mask in {split}: {sample.mask} (image {sample.image}) has no lesion pixel; "
            "in-distribution images need a lesion, so move the image to ood_sources or fix the mask"
            + _small_values_hint(sample.mask)
        )
    elif split in ID_SPLITS and not result.mask.any():
        result.errors.append(
            f"lesion vanishes at {_hxw(size)}: {sample.mask} has {int(mask.sum())} lesion pixels at "
            f"{_hxw(mask.shape)} and none after nearest-neighbour resizing; use a larger image_size "
            "or leave the image out"
        )
    return result


def _small_values_hint(mask_path: Path) -> str:
    # A 0/1 mask in an 8-bit file reads as empty under the default full scale of 255.
    try:
        values, full_scale = read_array(mask_path)
    except ReadError:
        return ""
    peak = float(values.max())
    if 0 < peak < full_scale / 2:
        return (
            f" (its largest value is {peak:g} of {full_scale:g}, so if that value marks the lesion, "
            f"set mask_rule.max_value: {peak:g})"
        )
    return ""


def _hxw(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"


def _to_split(samples: list[Sample], results: list[_Decoded], split: str, size: tuple[int, int]) -> Split:
    height, width = size
    images = np.stack([r.image for r in results]) if results else np.zeros((0, height, width, 3), np.uint8)
    masks = np.stack([r.mask for r in results]) if results else np.zeros((0, height, width), np.uint8)
    originals = None
    if split in EVALUATION_SPLITS and any(r.original_size != size for r in results):
        originals = [r.original_mask for r in results]
    return Split(images=images, masks=masks, names=[s.name for s in samples], original_masks=originals)
