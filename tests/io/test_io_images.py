"""load_image on every kind of input a user may hand us, and the errors for the ones we refuse."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tracenet.io import ImageLoadError, fit_long_side, load_image


def _rgb(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_png_round_trip(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    assert np.array_equal(out, arr)
    assert np.array_equal(load_image(str(tmp_path / "a.png")), arr)


def test_grayscale_and_bilevel(tmp_path):
    gray = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (20, 30, 3)
    assert all(np.array_equal(out[..., c], gray) for c in range(3))
    Image.fromarray(gray > 100).convert("1").save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    assert set(np.unique(out)) == {0, 255} and np.array_equal(out[..., 0] == 255, gray > 100)


def test_rgba_is_composited_onto_white(tmp_path):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red-ish everywhere
    rgba[0, 0, 3] = 0  # fully transparent -> white
    rgba[0, 1, 3] = 255  # opaque -> colour
    rgba[0, 2, 3] = 128  # half -> blend
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    out = load_image(tmp_path / "t.png")
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [200, 0, 0]
    a = 128 / 255
    assert out[0, 2].tolist() == [round(200 * a + 255 * (1 - a)), round(255 * (1 - a)), round(255 * (1 - a))]
    la = Image.fromarray(rgba[..., [0, 3]].copy(), "LA")
    assert load_image(la)[0, 0].tolist() == [255, 255, 255]


def test_palette_with_and_without_transparency(tmp_path):
    im = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    im.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert np.array_equal(out, np.asarray(im.convert("RGB")))
    idx = int(np.asarray(im)[0, 0])
    im.info["transparency"] = idx
    im.save(tmp_path / "pt.png", transparency=idx)
    out = load_image(tmp_path / "pt.png")
    assert out[0, 0].tolist() == [255, 255, 255]


def test_16bit_png_is_scaled(tmp_path):
    values = np.array([[0, 257, 65535], [32896, 1000, 60000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = load_image(tmp_path / "d.png")
    assert out[..., 0].tolist() == [[0, 1, 255], [128, 4, 233]]
    assert np.array_equal(load_image(values), out)  # uint16 arrays take the same path


def test_exif_rotated_jpeg(tmp_path):
    arr = np.full((20, 40, 3), 255, dtype=np.uint8)  # stored 20 high, 40 wide
    arr[:5, :5] = (255, 0, 0)  # red marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (40, 20, 3)
    assert out[1, -2, 0] > 200 and out[1, -2, 1] < 60  # marker now at the top-right
    assert out[1, 1].min() > 200  # top-left is white


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == (6, 8, 3)
    assert out[3, 4, 0] > 200 and out[3, 4, 1] < 60 and out[3, 4, 2] < 60  # red


def test_numpy_inputs():
    assert np.array_equal(load_image(np.ones((4, 5), bool))[..., 1], np.full((4, 5), 255))
    f = np.linspace(0, 1, 12).reshape(2, 2, 3)
    assert load_image(f).tolist() == np.rint(f * 255).astype(np.uint8).tolist()
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert load_image(rgba).tolist() == np.full((2, 2, 3), 255).tolist()
    assert load_image(np.zeros((3, 4, 1), np.uint8)).shape == (3, 4, 3)
    with pytest.raises(ImageLoadError, match="divide 0..255 data by 255"):
        load_image(f * 255)
    with pytest.raises(ImageLoadError, match=r"transpose\(1, 2, 0\)"):
        load_image(np.zeros((3, 40, 50), np.uint8))
    with pytest.raises(ImageLoadError, match="NaN"):
        load_image(np.full((2, 2, 3), np.nan))
    with pytest.raises(ImageLoadError, match="zero size"):
        load_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ImageLoadError, match="PIL.Image or an HxWx3"):
        load_image(b"bytes")


def test_missing_empty_text_and_corrupt_files(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "notes.jpg").write_text("these are my holiday notes, not a picture\n")
    with pytest.raises(ImageLoadError, match=r"notes\.jpg: not an image file"):
        load_image(tmp_path / "notes.jpg")
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.png: the image is corrupt or truncated"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageLoadError, match="not a file"):
        load_image(tmp_path)


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * (width + 1) * 4)  # only a few rows: never decoded
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_huge_dimensions_are_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(12_000, 10_000))
    with pytest.raises(
        ImageLoadError, match=r"bomb\.png: image is 12000x10000 = 120 MP, over the 100 MP limit"
    ):
        load_image(path)
    path.write_bytes(_png_claiming(30_000, 30_000))  # PIL's own bomb guard fires first at this size
    with pytest.raises(ImageLoadError, match=r"bomb\.png: image is too large.*over the 100 MP limit"):
        load_image(path)
    Image.fromarray(_rgb(50, 50)).save(tmp_path / "small.png")
    with pytest.raises(ImageLoadError, match="over the"):
        load_image(tmp_path / "small.png", max_pixels=2000)


def test_fit_long_side():
    img = _rgb(300, 200)
    same, s = fit_long_side(img, 512)
    assert same is img and s == 1.0
    small, s = fit_long_side(img, 150)
    assert small.shape == (150, 100, 3) and s == pytest.approx(0.5)
    assert small.dtype == np.uint8
    flat = np.full((300, 200, 3), 77, np.uint8)
    assert np.all(fit_long_side(flat, 64)[0] == 77)
