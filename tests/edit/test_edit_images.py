"""load_rgb: every broken input becomes an ImageError subclass with a useful message, never a crash."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tracenet.edit.images import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
    encode_png,
    load_rgb,
)


def _encoded(fmt: str, shape=(64, 64, 3)) -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the cut TIFF EXIF
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_every_truncation_is_an_image_error(fmt):
    data = _encoded(fmt)
    assert load_rgb(data).shape == (64, 64, 3)
    for n in sorted({1, 2, 8, 12, 20, 33, 50, 100, len(data) // 2, len(data) - 40}):
        try:
            load_rgb(data[:n], name="cut")
        except ImageError as exc:
            assert "cut" in str(exc)


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", EmptyImageError, "empty"),
        (b"hello, I am text" * 20, NotAnImageError, "not an image"),
        (_encoded("PNG", (300, 200, 3)), ImageTooLargeError, "limit"),
        (_encoded("PNG", (4, 50, 3)), ImageTooSmallError, "at least"),
        (_encoded("JPEG")[:300], CorruptImageError, "truncated"),
    ],
)
def test_error_kinds(data, error, words):
    with pytest.raises(error, match=words):
        load_rgb(data, max_pixels=50_000)


def test_paths_grey_and_transparency(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((10, 12), 7, np.uint8)).save(path)
    image = load_rgb(path)
    assert image.shape == (10, 12, 3) and image.dtype == np.uint8 and (image == 7).all()
    rgba = np.zeros((10, 10, 4), np.uint8)  # fully transparent black -> white
    assert (load_rgb(Image.fromarray(rgba)) == 255).all()
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_rgb(tmp_path / "missing.png")


def test_encode_png_round_trip():
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    back = np.asarray(Image.open(io.BytesIO(encode_png(mask))))
    np.testing.assert_array_equal(back > 127, mask)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((3, 3), np.float32))
