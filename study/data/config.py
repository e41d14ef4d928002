"""Dataset config files (YAML): where the images are, how they split, how masks read.

A config names in-distribution sources (images with a lesion mask), lesion-free sources (images
only), how the in-distribution pool splits into train / id_val / id_test and how the lesion-free
pool splits into ood_val / ood_test. ``docs/data.md`` describes every key with examples; the shipped
configs live in ``study/data/presets/``.

Relative paths start at ``root``. Without a root they start at the config file's folder; a relative
root itself starts there too. ``${VAR}`` in any path expands to the environment variable VAR.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from study.data.bundle import DataBundle
from study.data.readers import MaskRule

DEFAULT_IMAGE_SIZE = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Splits that may come from sources of their own instead of the shared pools.
OWN_SOURCE_SPLITS = ("id_val", "id_test", "ood_val", "ood_test")

TOP_LEVEL_KEYS = (
    "name",
    "root",
    "id_sources",
    "ood_sources",
    *(f"{split}_sources" for split in OWN_SOURCE_SPLITS),
    "split",
    "ood_split",
    "image_size",
    "mask_rule",
    "mask_tolerance",
    "normalization",
)
SPLIT_FILE_KEYS = ("train", "id_val", "id_test", "ood_val", "ood_test")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class DataConfigError(ValueError):
    """A dataset config that cannot be parsed: wrong key, type, value or unset variable."""


@dataclass(frozen=True)
class LayoutPreset:
    """Folder layout of a public dataset, usable as ``{preset: NAME, path: DIR}`` in a source.

    Attributes:
        name: the preset name used in configs.
        images: image folder under the dataset folder.
        masks: candidate mask folders; the first one that exists is used.
    """

    name: str
    images: str
    masks: tuple[str, ...]


LAYOUT_PRESETS = {
    preset.name: preset
    for preset in (
        LayoutPreset("kvasir_seg", images="images", masks=("masks",)),
        LayoutPreset("cvc_clinicdb", images="Original", masks=("Ground Truth",)),
        # The FUSeg release calls its mask folder labels/; copies often rename it masks/.
        LayoutPreset("fuseg", images="images", masks=("labels", "masks")),
    )
}


@dataclass(frozen=True)
class Source:
    """One list of files in a config.

    Attributes:
        layout: "folders" (paired image and mask folders), "folder" (images only), "csv", or
            "preset" (a ``LayoutPreset`` applied to ``images``).
        origin: where it sits in the config, e.g. "id_sources[0]", for messages.
        images: image folder, or the dataset folder for a preset.
        masks: mask folder ("folders" only).
        csv: list file ("csv" only); columns image_path and, for masked sources, mask_path.
        preset: the layout preset's name ("preset" only).
        mask_suffix: text after the image stem in mask file names, e.g. "_mask".
        has_masks: True for in-distribution sources.
    """

    layout: str
    origin: str
    images: Path | None = None
    masks: Path | None = None
    csv: Path | None = None
    preset: str | None = None
    mask_suffix: str = ""
    has_masks: bool = True


@dataclass(frozen=True)
class SplitSpec:
    """Division of the in-distribution pool into train, id_val and id_test.

    Exactly one mode applies: fractions (``val_fraction``), k-fold (``folds``, ``fold``) or
    ``files`` mapping split names to lists of image names, one per line.
    """

    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    folds: int | None = None
    fold: int | None = None
    files: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class OodSplitSpec:
    """Division of the lesion-free pool into ood_val (seen by the search) and ood_test.

    ``val_fraction`` is 0 when ood_val has sources of its own and 1 when ood_test has.
    """

    val_fraction: float = 0.5
    seed: int = 0


@dataclass(frozen=True)
class DatasetConfig:
    """A parsed dataset config with every path made absolute.

    Attributes:
        name: short label used in descriptions.
        path: the config file, or None when built in code.
        root: folder that names of images are relative to.
        id_sources, ood_sources: the pools that the split specs divide.
        split_sources: sources of their own for any of id_val, id_test, ood_val, ood_test.
        split, ood_split: how the pools divide.
        image_size: network input (H, W).
        mask_rule: how raw mask values become {0, 1}.
        mean, std: per-channel normalization for the trainer (fractions of 255).
    """

    name: str
    path: Path | None
    root: Path
    id_sources: tuple[Source, ...]
    ood_sources: tuple[Source, ...]
    split_sources: Mapping[str, tuple[Source, ...]]
    split: SplitSpec
    ood_split: OodSplitSpec
    image_size: tuple[int, int] = (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
    mask_rule: MaskRule = MaskRule()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def preset_config_path(name: str) -> Path:
    """Return the path of a shipped dataset config, e.g. ``preset_config_path("kvasir_seg")``."""
    return Path(str(resources.files("study.data") / "presets" / f"{name}.yaml"))


def shipped_presets() -> list[str]:
    """Return the names of the dataset configs shipped in ``study/data/presets``."""
    folder = resources.files("study.data") / "presets"
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_dataset_config(path: str | Path, data_root: str | Path | None = None) -> DatasetConfig:
    """Parse a dataset config file.

    Args:
        path: a YAML file, or the name of a shipped preset (see ``shipped_presets()``).
        data_root: replaces the config's ``root``; relative paths then start here.

    Raises:
        DataConfigError: unreadable YAML, unknown or ill-typed keys, or an unset ``${VAR}``.
    """
    path = Path(path)
    if not path.exists() and path.suffix == "" and path.name in shipped_presets():
        path = preset_config_path(path.name)
    path = path.resolve()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise DataConfigError(f"cannot read dataset config {path}: {error}") from None
    except yaml.YAMLError as error:
        raise DataConfigError(f"dataset config {path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise DataConfigError(f"dataset config {path} must be a mapping of keys, got {type(raw).__name__}")
    return parse_dataset_config(raw, path=path, data_root=data_root)


def parse_dataset_config(
    raw: Mapping[str, Any], path: Path | None = None, data_root: str | Path | None = None
) -> DatasetConfig:
    """Build a ``DatasetConfig`` from an already-loaded mapping (see ``load_dataset_config``)."""
    parser = _Parser(path)
    parser.check_keys(raw, TOP_LEVEL_KEYS, "")

    root = parser.resolve_root(raw.get("root"), data_root)
    id_sources = parser.sources(raw.get("id_sources"), "id_sources", root, has_masks=True, required=True)
    split_sources = {}
    for split in OWN_SOURCE_SPLITS:
        key = f"{split}_sources"
        if key in raw:
            has_masks = split.startswith("id_")
            split_sources[split] = parser.sources(raw[key], key, root, has_masks=has_masks, required=True)
    own_ood = all(split in split_sources for split in ("ood_val", "ood_test"))
    ood_sources = parser.sources(
        raw.get("ood_sources"), "ood_sources", root, has_masks=False, required=not own_ood
    )

    return DatasetConfig(
        name=str(raw.get("name") or (path.stem if path else "dataset")),
        path=path,
        root=root,
        id_sources=id_sources,
        ood_sources=ood_sources,
        split_sources=split_sources,
        split=parser.split_spec(raw.get("split"), root, split_sources),
        ood_split=parser.ood_split_spec(raw.get("ood_split"), split_sources),
        image_size=parser.image_size(raw.get("image_size", DEFAULT_IMAGE_SIZE), "image_size"),
        mask_rule=parser.mask_rule(raw.get("mask_rule"), raw.get("mask_tolerance")),
        mean=parser.triple(raw, "normalization", "mean", IMAGENET_MEAN),
        std=parser.triple(raw, "normalization", "std", IMAGENET_STD),
    )


class _Parser:
    """Typed readers for config values; every error names the file and the key."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.folder = path.resolve().parent if path is not None else Path.cwd()

    def error(self, key: str, message: str) -> DataConfigError:
        where = f"dataset config {self.path}" if self.path else "dataset config"
        return DataConfigError(f"{where}: {key}: {message}")

    def check_keys(self, raw: Any, valid: tuple[str, ...], key: str) -> None:
        if not isinstance(raw, Mapping):
            raise self.error(key or "<top level>", f"expected a mapping, got {raw!r}")
        unknown = sorted(str(name) for name in raw if name not in valid)
        if unknown:
            prefix = f"{key}." if key else ""
            raise self.error(
                ", ".join(prefix + name for name in unknown),
                f"unknown key; valid keys are {', '.join(valid)}",
            )

    # Paths.

    def expand(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(key, f"expected a path string, got {value!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if not os.environ.get(name):
                raise self.error(
                    key,
                    f"environment variable {name} is not set or empty; set {name} to the data folder "
                    "or pass --data-root (data_root=) to override the config's root",
                )
            return os.environ[name]

        return _VARIABLE.sub(substitute, os.path.expanduser(value))

    def resolve_root(self, value: Any, data_root: str | Path | None) -> Path:
        if data_root is not None:
            return Path(os.path.expanduser(str(data_root))).resolve()
        if value is None:
            return self.folder
        return (self.folder / self.expand(value, "root")).resolve()

    def path_under(self, value: Any, key: str, base: Path) -> Path:
        return (base / self.expand(value, key)).resolve()

    # Sources.

    def sources(
        self, raw: Any, key: str, root: Path, has_masks: bool, required: bool
    ) -> tuple[Source, ...]:
        if raw is None:
            if required:
                raise self.error(key, "missing; list at least one source")
            return ()
        if not isinstance(raw, list) or not raw:
            raise self.error(key, f"expected a non-empty list of sources, got {raw!r}")
        return tuple(
            self.source(item, f"{key}[{index}]", root, has_masks) for index, item in enumerate(raw)
        )

    def source(self, raw: Any, key: str, root: Path, has_masks: bool) -> Source:
        if isinstance(raw, Mapping) and "preset" in raw:
            return self.preset_source(raw, key, root, has_masks)
        if not isinstance(raw, Mapping) or "layout" not in raw:
            raise self.error(key, f"expected a mapping with a 'layout' or 'preset' key, got {raw!r}")

        layout = raw["layout"]
        if layout == "csv":
            self.check_keys(raw, ("layout", "csv"), key)
            csv = self.path_under(raw.get("csv"), f"{key}.csv", root)
            return Source("csv", key, csv=csv, has_masks=has_masks)
        if has_masks and layout == "folders":
            self.check_keys(raw, ("layout", "images", "masks", "mask_suffix"), key)
            suffix = raw.get("mask_suffix", "")
            if not isinstance(suffix, str):
                raise self.error(f"{key}.mask_suffix", f"expected a string, got {suffix!r}")
            return Source(
                "folders",
                key,
                images=self.path_under(raw.get("images"), f"{key}.images", root),
                masks=self.path_under(raw.get("masks"), f"{key}.masks", root),
                mask_suffix=suffix,
            )
        if not has_masks and layout == "folder":
            self.check_keys(raw, ("layout", "images"), key)
            images = self.path_under(raw.get("images"), f"{key}.images", root)
            return Source("folder", key, images=images, has_masks=False)
        valid = "folders, csv, or a preset" if has_masks else "folder or csv"
        raise self.error(f"{key}.layout", f"invalid layout {layout!r}; valid here: {valid}")

    def preset_source(self, raw: Mapping[str, Any], key: str, root: Path, has_masks: bool) -> Source:
        self.check_keys(raw, ("preset", "path"), key)
        name = raw["preset"]
        if name not in LAYOUT_PRESETS:
            raise self.error(
                f"{key}.preset", f"unknown preset {name!r}; valid presets are {', '.join(LAYOUT_PRESETS)}"
            )
        if not has_masks:
            raise self.error(key, "presets describe images with masks; use {layout: folder} here")
        folder = self.path_under(raw.get("path"), f"{key}.path", root)
        return Source("preset", key, images=folder, preset=name)

    # Splits.

    def split_spec(self, raw: Any, root: Path, split_sources: Mapping[str, Any]) -> SplitSpec:
        if raw is None:
            raw = {}
        self.check_keys(raw, ("val_fraction", "test_fraction", "seed", "folds", "fold", "files"), "split")
        seed = self.integer(raw.get("seed", 0), "split.seed", minimum=0)

        if "files" in raw:
            others = sorted(set(raw) - {"files", "seed"})
            if others:
                raise self.error("split", f"'files' cannot be combined with {', '.join(others)}")
            self.check_keys(raw["files"], SPLIT_FILE_KEYS, "split.files")
            files = {
                name: self.path_under(value, f"split.files.{name}", root)
                for name, value in raw["files"].items()
            }
            for name in ("train", "id_val", "id_test"):
                if name not in files and name not in split_sources:
                    raise self.error("split.files", f"no list for {name!r}; give a file or {name}_sources")
            if ("ood_val" in files) != ("ood_test" in files):
                raise self.error("split.files", "give lists for both ood_val and ood_test, or for neither")
            return SplitSpec(val_fraction=0.0, test_fraction=0.0, seed=seed, files=files)

        test_default = 0.0 if "id_test" in split_sources else 0.2
        test_fraction = self.fraction(raw.get("test_fraction", test_default), "split.test_fraction")
        if "id_test" in split_sources and test_fraction > 0:
            raise self.error(
                "split.test_fraction", "id_test_sources already supply id_test; remove test_fraction"
            )

        if "folds" in raw or "fold" in raw:
            if "val_fraction" in raw:
                raise self.error("split", "give either val_fraction or folds/fold, not both")
            if "id_val" in split_sources:
                raise self.error("split.folds", "id_val_sources already supply id_val; remove folds/fold")
            folds = self.integer(raw.get("folds"), "split.folds", minimum=2)
            fold = self.integer(raw.get("fold"), "split.fold", minimum=0)
            if fold >= folds:
                raise self.error(
                    "split.fold", f"fold {fold} is out of range for {folds} folds (0..{folds - 1})"
                )
            return SplitSpec(val_fraction=0.0, test_fraction=test_fraction, seed=seed, folds=folds, fold=fold)

        val_default = 0.0 if "id_val" in split_sources else 0.2
        val_fraction = self.fraction(raw.get("val_fraction", val_default), "split.val_fraction")
        if "id_val" in split_sources and val_fraction > 0:
            raise self.error(
                "split.val_fraction", "id_val_sources already supply id_val; remove val_fraction"
            )
        if val_fraction + test_fraction >= 1:
            raise self.error(
                "split", f"val_fraction {val_fraction} + test_fraction {test_fraction} must stay below 1"
            )
        return SplitSpec(val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)

    def ood_split_spec(self, raw: Any, split_sources: Mapping[str, Any]) -> OodSplitSpec:
        if raw is None:
            raw = {}
        self.check_keys(raw, ("val_fraction", "seed"), "ood_split")
        seed = self.integer(raw.get("seed", 0), "ood_split.seed", 0)
        own = [name for name in ("ood_val", "ood_test") if name in split_sources]
        if not own:
            fraction = self.fraction(raw.get("val_fraction", 0.5), "ood_split.val_fraction")
            return OodSplitSpec(val_fraction=fraction, seed=seed)
        if "val_fraction" in raw:
            raise self.error(
                "ood_split.val_fraction", f"{own[0]}_sources already supply {own[0]}; remove val_fraction"
            )
        # The lesion-free pool fills whichever split has no sources of its own.
        return OodSplitSpec(val_fraction=0.0 if "ood_val" in own else 1.0, seed=seed)

    # Scalars.

    def fraction(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise self.error(key, f"expected a number in [0, 1), got {value!r}")
        return float(value)

    def integer(self, value: Any, key: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def image_size(self, value: Any, key: str) -> tuple[int, int]:
        if isinstance(value, list) and len(value) == 2:
            return (self.integer(value[0], key, 8), self.integer(value[1], key, 8))
        if isinstance(value, int) and not isinstance(value, bool):
            side = self.integer(value, key, 8)
            return (side, side)
        raise self.error(key, f"expected an integer side or [H, W] of at least 8 pixels, got {value!r}")

    def mask_rule(self, rule: Any, tolerance: Any) -> MaskRule:
        defaults = MaskRule()
        rule = {} if rule is None else rule
        self.check_keys(rule, ("threshold", "max_value"), "mask_rule")
        threshold = rule.get("threshold", defaults.threshold)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
            raise self.error("mask_rule.threshold", f"expected a number in (0, 1), got {threshold!r}")
        max_value = rule.get("max_value")
        if max_value is not None and (
            isinstance(max_value, bool) or not isinstance(max_value, (int, float)) or max_value <= 0
        ):
            raise self.error("mask_rule.max_value", f"expected a positive number, got {max_value!r}")

        tolerance = {} if tolerance is None else tolerance
        if isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool):
            tolerance = {"value": tolerance}
        self.check_keys(tolerance, ("value", "max_fraction"), "mask_tolerance")
        value = tolerance.get("value", defaults.tolerance)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 0.5:
            raise self.error("mask_tolerance.value", f"expected a number in [0, 0.5), got {value!r}")
        max_fraction = self.fraction(
            tolerance.get("max_fraction", defaults.max_unclean_fraction), "mask_tolerance.max_fraction"
        )
        return MaskRule(
            threshold=float(threshold),
            max_value=None if max_value is None else float(max_value),
            tolerance=float(value),
            max_unclean_fraction=max_fraction,
        )

    def triple(self, raw: Mapping[str, Any], section: str, key: str, default: tuple[float, ...]) -> tuple:
        values = raw.get(section) or {}
        self.check_keys(values, ("mean", "std"), section)
        value = values.get(key, list(default))
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise self.error(f"{section}.{key}", f"expected three numbers (R, G, B), got {value!r}")
        if key == "std" and min(value) <= 0:
            raise self.error(f"{section}.{key}", f"standard deviations must be positive, got {value!r}")
        return tuple(float(v) for v in value)


def build_bundle(
    config: DatasetConfig,
    image_size: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> DataBundle:
    """Check, decode and resize every split of ``config``, reusing a decoded copy when present.

    Args:
        config: a parsed dataset config.
        image_size: side of the square network input; None keeps the config's ``image_size``.
        cache_dir: folder of decoded arrays; None uses ``$LESION_STUDY_CACHE`` or
            ``~/.cache/lesion-study``.
        use_cache: False decodes every file and writes nothing.

    Raises:
        DataCheckError: the dataset check found errors; the message lists the first offenders
            and the number of problems.
    """
    # check imports this module, so the import waits until call time.
    from study.data.cache import build_or_load_bundle

    return build_or_load_bundle(config, image_size, cache_dir=cache_dir, use_cache=use_cache)
