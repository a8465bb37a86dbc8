"""Mask PNGs and overlays."""

import numpy as np
import pytest
from PIL import Image

from tracenet.io import overlay, save_mask_png, save_overlay


def _mask():
    m = np.zeros((6, 8), bool)
    m[1:5, 2:7] = True
    return m


def test_save_mask_png_is_0_255_grayscale(tmp_path):
    path = save_mask_png(_mask(), tmp_path / "out" / "m.png")
    im = Image.open(path)
    assert im.mode == "L" and im.size == (8, 6)
    arr = np.asarray(im)
    assert set(np.unique(arr)) == {0, 255}
    assert np.array_equal(arr == 255, _mask())
    with pytest.raises(ValueError, match="use a .png suffix"):
        save_mask_png(_mask(), tmp_path / "m.jpg")
    with pytest.raises(ValueError, match="2-D"):
        save_mask_png(np.zeros((2, 2, 1), bool), tmp_path / "m.png")


def test_overlay_blends_inside_and_outlines():
    img = np.full((6, 8, 3), 100, np.uint8)
    m = _mask()
    out = overlay(img, m, color=(200, 0, 50), alpha=0.5, outline=False)
    assert out[~m].tolist() == img[~m].tolist()
    assert out[2, 3].tolist() == [150, 50, 75]
    assert img[2, 3].tolist() == [100, 100, 100]  # input untouched
    out = overlay(img, m, color=(200, 0, 50), alpha=0.5)
    assert out[1, 2].tolist() == [200, 0, 50]  # boundary pixel, full colour
    assert out[2, 3].tolist() == [150, 50, 75]  # interior pixel, blended
    with pytest.raises(ValueError, match="mask is 5x8 but the image is 6x8"):
        overlay(img, m[:5])
    with pytest.raises(ValueError, match="uint8"):
        overlay(img.astype(np.float32), m)


def test_save_overlay_by_suffix(tmp_path):
    img = np.full((6, 8, 3), 100, np.uint8)
    png = save_overlay(img, _mask(), tmp_path / "o.png", alpha=1.0, outline=False, color=(1, 2, 3))
    assert Image.open(png).format == "PNG"
    assert np.asarray(Image.open(png))[2, 3].tolist() == [1, 2, 3]
    jpg = save_overlay(img, _mask(), tmp_path / "o.JPEG")
    assert Image.open(jpg).format == "JPEG"
    with pytest.raises(ValueError, match="unsupported suffix '.bmp'"):
        save_overlay(img, _mask(), tmp_path / "o.bmp")
