"""Decode image and mask files into the arrays a study trains on.

Images become (H, W, 3) uint8 RGB whatever their file stores: grayscale is repeated over three
channels, alpha is dropped, 16-bit values are scaled to 8 bits. Masks become (H, W) uint8 in {0, 1}
under a ``MaskRule``; colour masks are reduced to one channel by taking the maximum over channels,
so a red-on-black mask reads the same as a white-on-black one (and a multi-class colour mask
collapses to "any label").

Formats: JPEG, PNG (1/8/16-bit, palette), BMP through Pillow; TIFF through tifffile, falling back
to Pillow for compressions tifffile cannot decode without the optional imagecodecs package (LZW,
JPEG-in-TIFF).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})

# How many distinct offending values a non-binary mask error lists.
MAX_VALUES_SHOWN = 6


class ReadError(ValueError):
    """A file that cannot be decoded as an image (missing, truncated, unknown format)."""


class MaskError(ValueError):
    """A mask whose values do not follow the dataset's mask rule."""


@dataclass(frozen=True)
class MaskRule:
    """Rule that turns raw mask values into {0, 1}.

    Attributes:
        threshold: foreground is ``value > threshold * full_scale``.
        max_value: the full-scale value; None takes the file's dtype range (255 for 8-bit,
            65535 for 16-bit, 1 for 1-bit and float). Set it to 1 for masks stored as 0/1 in
            8-bit files.
        tolerance: values within ``tolerance * full_scale`` of 0 or of full scale count as clean
            background or foreground (lossy JPEG masks carry noise near both ends).
        max_unclean_fraction: largest fraction of a mask's pixels allowed outside both clean
            bands before the mask is rejected as non-binary.
    """

    threshold: float = 0.5
    max_value: float | None = None
    tolerance: float = 0.1
    max_unclean_fraction: float = 0.01


def read_array(path: Path) -> tuple[np.ndarray, float]:
    """Decode ``path`` into its stored values and the full-scale value of its type.

    Returns:
        values: (H, W) or (H, W, C) array in the file's own dtype (palette files are expanded to
            their colours).
        full_scale: 255 for 8-bit data, 65535 for 16-bit, 1 for 1-bit and floating-point data.

    Raises:
        ReadError: the file is missing, truncated or not an image this module reads.
    """
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        try:
            values = _first_page(tifffile.imread(path, key=0))
        except (OSError, ValueError, tifffile.TiffFileError) as tiff_error:
            # tifffile needs imagecodecs for LZW and JPEG compression; Pillow decodes those.
            try:
                values = _read_with_pillow(path)
            except ReadError as pillow_error:
                raise ReadError(f"{pillow_error}; tifffile also failed: {tiff_error}") from None
    else:
        values = _read_with_pillow(path)
    return values, _full_scale(values, path)


def _read_with_pillow(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            return _pillow_to_array(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ReadError(f"cannot decode {path}: {error}") from None


def _pillow_to_array(image: Image.Image) -> np.ndarray:
    # Palette and odd modes become plain colour values first.
    if image.mode in ("P", "PA"):
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif image.mode == "1":
        return np.asarray(image, dtype=bool)
    elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    values = np.asarray(image)

    # Pillow's 32-bit "I" mode carries 16-bit PNGs on some versions.
    if image.mode == "I":
        if values.min() < 0 or values.max() > np.iinfo(np.uint16).max:
            raise ValueError(f"32-bit integer values {values.min()}..{values.max()} are not supported")
        values = values.astype(np.uint16)
    return values


def _first_page(values: np.ndarray) -> np.ndarray:
    # Planar TIFFs store (C, H, W); the readers expect channels last.
    if values.ndim == 3 and values.shape[0] in (3, 4) and values.shape[2] not in (1, 3, 4):
        values = np.moveaxis(values, 0, -1)
    if values.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D image with optional channels, got shape {values.shape}")
    return values


def _full_scale(values: np.ndarray, path: Path) -> float:
    if values.dtype == bool:
        return 1.0
    if values.dtype.kind == "u" and values.dtype.itemsize in (1, 2):
        return float(np.iinfo(values.dtype).max)
    if np.issubdtype(values.dtype, np.floating):
        return 1.0
    raise ReadError(f"{path}: unsupported pixel type {values.dtype}; expected 8/16-bit or float")


def to_rgb8(values: np.ndarray, full_scale: float, path: Path) -> np.ndarray:
    """Convert decoded image values to (H, W, 3) uint8 RGB."""
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[..., 0]
    if values.ndim == 3:
        if values.shape[2] == 2:  # grey + alpha
            values = values[..., 0]
        elif values.shape[2] in (3, 4):  # RGB or RGBA
            values = values[..., :3]
        else:
            raise ReadError(f"{path}: {values.shape[2]} channels; expected 1, 2, 3 or 4")
    if values.ndim == 2:
        values = np.repeat(values[..., None], 3, axis=2)

    if values.dtype == np.uint8:
        return np.ascontiguousarray(values)
    if np.issubdtype(values.dtype, np.floating) and (values.min() < 0 or values.max() > 1):
        raise ReadError(
            f"{path}: float image values span {values.min():g}..{values.max():g}; expected 0..1"
        )
    scaled = np.rint(values.astype(np.float32) * (255.0 / full_scale))
    return scaled.astype(np.uint8)


def binarize_mask(values: np.ndarray, full_scale: float, rule: MaskRule, path: Path) -> np.ndarray:
    """Convert decoded mask values to (H, W) uint8 in {0, 1} under ``rule``.

    Raises:
        MaskError: more than ``rule.max_unclean_fraction`` of the pixels lie between the clean
            bands, any value exceeds ``rule.max_value``, or intermediate values appear in a mask
            with no clean foreground (a mid-grey label such as 128 standing for the lesion).
    """
    if values.ndim == 3:
        if values.shape[2] in (2, 4):  # drop alpha
            values = values[..., :-1]
        values = values.max(axis=2)
    values = values.astype(np.float32) if values.dtype == bool else values

    scale = full_scale if rule.max_value is None else float(rule.max_value)
    if values.max() > scale:
        raise MaskError(
            f"{path}: mask value {values.max():g} exceeds mask_rule.max_value {scale:g}; "
            "raise max_value or remove it to use the file's dtype range"
        )

    low = values <= rule.tolerance * scale
    high = values >= (1.0 - rule.tolerance) * scale
    unclean = ~(low | high)
    unclean_fraction = float(unclean.mean())
    if unclean_fraction > rule.max_unclean_fraction or (unclean.any() and not high.any()):
        raise MaskError(
            f"{path}: mask is not binary: {unclean_fraction:.2%} of pixels lie between "
            f"{rule.tolerance * scale:g} and {(1 - rule.tolerance) * scale:g} "
            f"(values found: {_describe_values(values)}); store masks as 0 and {scale:g}, or "
            "adjust mask_rule.max_value / mask_tolerance"
        )
    return (values > rule.threshold * scale).astype(np.uint8)


def _describe_values(values: np.ndarray) -> str:
    found, counts = np.unique(values, return_counts=True)
    order = np.argsort(counts)[::-1][:MAX_VALUES_SHOWN]
    shown = ", ".join(f"{found[i]:g} ({counts[i] / values.size:.1%})" for i in sorted(order))
    more = len(found) - len(order)
    return shown + (f" and {more} more" if more > 0 else "")


def read_image(path: Path, size: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Read an image as uint8 RGB, resized to ``size`` = (H, W) when given.

    JPEGs larger than twice ``size`` are decoded at a reduced DCT scale first, which is several
    times faster and acts as an area filter.

    Returns:
        The (H, W, 3) uint8 image and its original (H, W).
    """
    path = Path(path)
    if size is not None and path.suffix.lower() in (".jpg", ".jpeg"):
        try:
            with Image.open(path) as image:
                original = (image.height, image.width)
                image.draft("RGB", (size[1], size[0]))
                image.load()
                values = _pillow_to_array(image)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise ReadError(f"cannot decode {path}: {error}") from None
        rgb = to_rgb8(values, 255.0, path)
    else:
        values, full_scale = read_array(path)
        rgb = to_rgb8(values, full_scale, path)
        original = rgb.shape[:2]
    if size is not None:
        rgb = resize_image(rgb, size)
    return rgb, original


def read_mask(path: Path, rule: MaskRule) -> np.ndarray:
    """Read a mask at its original size as (H, W) uint8 in {0, 1}."""
    values, full_scale = read_array(Path(path))
    return binarize_mask(values, full_scale, rule, Path(path))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, 3) uint8 to ``size`` = (H, W): area averaging to shrink, bilinear to enlarge."""
    if image.shape[:2] == tuple(size):
        return image
    shrinking = size[0] * size[1] < image.shape[0] * image.shape[1]
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), method))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a {0, 1} mask to ``size`` = (H, W) with nearest-neighbour sampling only."""
    if mask.shape == tuple(size):
        return mask
    resized = Image.fromarray(mask).resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(resized)
