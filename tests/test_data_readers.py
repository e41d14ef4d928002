"""Decoding images and masks of every supported kind, and the errors on broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from study.data.readers import (
    MaskError,
    MaskRule,
    ReadError,
    binarize_mask,
    read_array,
    read_image,
    read_mask,
    resize_image,
    resize_mask,
)


def square_mask(size: int = 16, low: int = 4, high: int = 12, value: int = 255) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[low:high, low:high] = value
    return mask


# Images.


def test_rgb_jpeg_reads_as_uint8_rgb(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    Image.fromarray(np.full((10, 12, 3), (200, 30, 60), np.uint8)).save(path, quality=95)
    image, original = read_image(path)
    assert image.shape == (10, 12, 3)
    assert image.dtype == np.uint8
    assert original == (10, 12)
    assert abs(int(image[5, 5, 0]) - 200) <= 3


def test_grayscale_image_repeats_channels(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((4, 4), 77, np.uint8)).save(path)
    image, _ = read_image(path)
    assert image.shape == (4, 4, 3)
    assert (image == 77).all()


def test_rgba_image_drops_alpha(tmp_path: Path) -> None:
    path = tmp_path / "rgba.png"
    values = np.zeros((4, 4, 4), np.uint8)
    values[..., 0], values[..., 1], values[..., 2], values[..., 3] = 10, 20, 30, 0
    Image.fromarray(values, mode="RGBA").save(path)
    image, _ = read_image(path)
    assert image.shape == (4, 4, 3)
    assert image[0, 0].tolist() == [10, 20, 30]


def test_16bit_png_image_scales_to_8bit(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    values = np.array([[0, 257 * 100], [65535, 257 * 3]], np.uint16)
    Image.fromarray(values).save(path)
    raw, full_scale = read_array(path)
    assert full_scale == 65535
    image, _ = read_image(path)
    assert image[..., 0].tolist() == [[0, 100], [255, 3]]


def test_palette_png_image_reads_palette_colours(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    indices = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    indices.putpalette([0, 0, 0, 250, 40, 10] + [0] * 762)
    indices.save(path)
    image, _ = read_image(path)
    assert image[0, 1].tolist() == [250, 40, 10]
    assert image[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("dtype, value, expected", [(np.uint8, 90, 90), (np.uint16, 257 * 90, 90)])
def test_tiff_image_via_tifffile(tmp_path: Path, dtype, value, expected) -> None:
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, np.full((6, 5, 3), value, dtype))
    image, original = read_image(path)
    assert original == (6, 5)
    assert (image == expected).all()


def test_lzw_tiff_falls_back_to_pillow(tmp_path: Path) -> None:
    path = tmp_path / "lzw.tif"
    Image.fromarray(square_mask()).save(path, compression="tiff_lzw")
    mask = read_mask(path, MaskRule())
    assert mask.sum() == 64


def test_bmp_image(tmp_path: Path) -> None:
    path = tmp_path / "a.bmp"
    Image.fromarray(np.full((3, 7, 3), 5, np.uint8)).save(path)
    image, _ = read_image(path)
    assert image.shape == (3, 7, 3)
    assert (image == 5).all()


def test_jpeg_reduced_decode_matches_size(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(np.full((400, 300, 3), 120, np.uint8)).save(path)
    image, original = read_image(path, (50, 40))
    assert image.shape == (50, 40, 3)
    assert original == (400, 300)
    assert abs(int(image.mean()) - 120) <= 2


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\0" * 40])
def test_unreadable_file_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(ReadError, match="broken.jpg"):
        read_image(path)


def test_truncated_png_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ReadError, match="cut.png"):
        read_image(path)


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="nowhere.png"):
        read_image(tmp_path / "nowhere.png")


# Masks.


def test_binarize_by_hand() -> None:
    # Full scale 255, threshold 0.5: foreground is value > 127.5; 20 and 240 are clean.
    values = np.array([[0, 20], [240, 255]], np.uint8)
    rule = MaskRule(max_unclean_fraction=0.0)
    assert binarize_mask(values, 255, rule, Path("m.png")).tolist() == [[0, 0], [1, 1]]


def test_mid_grey_mask_names_file_and_values(tmp_path: Path) -> None:
    path = tmp_path / "grey_mask.png"
    Image.fromarray(square_mask(value=128)).save(path)
    with pytest.raises(MaskError) as caught:
        read_mask(path, MaskRule())
    assert "grey_mask.png" in str(caught.value)
    assert "128" in str(caught.value)


def test_small_grey_lesion_without_clean_foreground_rejected(tmp_path: Path) -> None:
    # 1 grey pixel of 256 is under the 1% allowance, but no pixel is clean foreground.
    path = tmp_path / "dot.png"
    values = np.zeros((16, 16), np.uint8)
    values[3, 3] = 128
    Image.fromarray(values).save(path)
    with pytest.raises(MaskError, match="dot.png"):
        read_mask(path, MaskRule())


def test_jpeg_mask_noise_within_tolerance(tmp_path: Path) -> None:
    path = tmp_path / "noisy_mask.jpg"
    rows, cols = np.mgrid[:128, :128]
    drawn = ((rows - 61) ** 2 + (cols - 67) ** 2 < 37**2).astype(np.uint8) * 255
    Image.fromarray(drawn).save(path, quality=75)
    raw, _ = read_array(path)
    assert len(np.unique(raw)) > 2  # the file really carries compression noise
    mask = read_mask(path, MaskRule())
    assert (mask == (drawn > 0)).all()


def test_rgb_mask_takes_channel_maximum(tmp_path: Path) -> None:
    path = tmp_path / "red_mask.png"
    values = np.zeros((16, 16, 3), np.uint8)
    values[4:12, 4:12, 0] = 255
    Image.fromarray(values).save(path)
    mask = read_mask(path, MaskRule())
    assert mask.shape == (16, 16)
    assert mask.sum() == 64


def test_rgba_mask_ignores_alpha(tmp_path: Path) -> None:
    path = tmp_path / "rgba_mask.png"
    values = np.zeros((8, 8, 4), np.uint8)
    values[..., 3] = 255  # opaque everywhere: alpha must not count as foreground
    values[2:4, 2:4, :3] = 255
    Image.fromarray(values, mode="RGBA").save(path)
    assert read_mask(path, MaskRule()).sum() == 4


def test_16bit_png_mask(tmp_path: Path) -> None:
    path = tmp_path / "deep_mask.png"
    Image.fromarray(square_mask().astype(np.uint16) * 257).save(path)
    assert read_mask(path, MaskRule()).sum() == 64


def test_16bit_mask_with_8bit_values_needs_max_value(tmp_path: Path) -> None:
    path = tmp_path / "deep_255.png"
    Image.fromarray(square_mask().astype(np.uint16)).save(path)
    assert read_mask(path, MaskRule()).sum() == 0  # 255 of 65535 is clean background
    assert read_mask(path, MaskRule(max_value=255)).sum() == 64


def test_zero_one_mask_with_max_value_one(tmp_path: Path) -> None:
    path = tmp_path / "binary01.png"
    Image.fromarray(square_mask(value=1)).save(path)
    assert read_mask(path, MaskRule(max_value=1)).sum() == 64


def test_value_above_max_value_rejected(tmp_path: Path) -> None:
    path = tmp_path / "over.png"
    Image.fromarray(square_mask(value=255)).save(path)
    with pytest.raises(MaskError, match="over.png"):
        read_mask(path, MaskRule(max_value=1))


def test_palette_mask(tmp_path: Path) -> None:
    path = tmp_path / "palette_mask.png"
    indices = Image.fromarray((square_mask() > 0).astype(np.uint8), mode="P")
    indices.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    indices.save(path)
    assert read_mask(path, MaskRule()).sum() == 64


def test_one_bit_mask(tmp_path: Path) -> None:
    path = tmp_path / "bits.png"
    Image.fromarray(square_mask() > 0).save(path)
    assert read_mask(path, MaskRule()).sum() == 64


def test_tiff_mask(tmp_path: Path) -> None:
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, square_mask())
    assert read_mask(path, MaskRule()).sum() == 64


# Resizing.


def test_resize_mask_is_nearest_and_binary() -> None:
    mask = (square_mask(size=64, low=16, high=48) > 0).astype(np.uint8)
    small = resize_mask(mask, (16, 16))
    assert small.shape == (16, 16)
    assert set(np.unique(small).tolist()) == {0, 1}
    assert small.sum() == 64  # the 32x32 square becomes 8x8


def test_resize_image_to_rectangle() -> None:
    image = np.zeros((20, 20, 3), np.uint8)
    assert resize_image(image, (10, 30)).shape == (10, 30, 3)
