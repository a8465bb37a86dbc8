"""Robust image loading: anything a user may hand us becomes an ``H x W x 3`` uint8 RGB array.

Handles EXIF orientation, grayscale / bilevel / palette images, transparency (composited onto white),
16-bit and 32-bit integer images (scaled to 8 bits), float images and arrays in [0, 1], CMYK, and refuses
corrupt, empty, non-image and oversized files with an :class:`ImageLoadError` that says which file and what
was wrong.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageSource = str | Path | Image.Image | np.ndarray

# Refuse images above this many pixels (decompression-bomb safe: checked from the header before decoding).
MAX_PIXELS = 100_000_000
_WHITE = (255, 255, 255)


class ImageLoadError(ValueError):
    """An input could not be turned into an RGB image; the message names the input and the problem."""


def load_image(src: ImageSource, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Load an image as ``uint8 [H, W, 3]`` RGB, upright according to its EXIF orientation.

    Args:
        src: a file path; a ``PIL.Image``; or a numpy array ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` (taken as
            RGB) or ``[H, W, 4]`` (RGBA). Arrays may be ``uint8``, ``uint16`` (scaled ``/ 257``), ``bool`` or
            float in [0, 1].
        max_pixels: refuse images with more pixels than this (``fit_long_side`` can then shrink a
            re-encoded copy).

    Conversions: transparent pixels are composited onto white; grayscale is replicated to 3 channels;
    16-bit images are scaled ``/ 257`` to 0..255; 32-bit integer (``I``) images are clipped to 0..65535 and
    scaled like 16-bit; float (``F``) images are taken as [0, 1] and clipped.

    Raises:
        ImageLoadError: missing, empty, corrupt, truncated or non-image files, zero-size or oversized
            images, arrays of an unsupported shape, dtype or range.
    """
    if isinstance(src, np.ndarray):
        return _from_array(src, "array", max_pixels)
    if isinstance(src, Image.Image):
        return _from_pil(src, "PIL image", max_pixels)
    if isinstance(src, (str, Path)):
        return _from_path(Path(src), max_pixels)
    raise ImageLoadError(
        f"cannot load an image from a {type(src).__name__}; pass a file path, a PIL.Image or an HxWx3 numpy array"
    )


def _from_path(path: Path, max_pixels: int) -> np.ndarray:
    if not path.exists():
        raise ImageLoadError(f"{path}: no such file")
    if not path.is_file():
        raise ImageLoadError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we enforce our own limit
            with Image.open(path) as im:
                _check_size(im.size, str(path), max_pixels)
                im.load()
                return _from_pil(im, str(path), max_pixels)
    except Image.DecompressionBombError as err:
        raise ImageLoadError(
            f"{path}: image is too large to decode safely, over the {max_pixels / 1e6:.0f} MP limit ({err}); "
            f"downscale it first"
        ) from err
    except UnidentifiedImageError as err:
        raise ImageLoadError(
            f"{path}: not an image file PIL can read (first bytes {_first_bytes(path)!r}); is it really a "
            f"{path.suffix or 'picture'}?"
        ) from err
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageLoadError):
            raise
        raise ImageLoadError(f"{path}: the image is corrupt or truncated ({err})") from err


def _first_bytes(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(16)


def _check_size(size: tuple[int, int], name: str, max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageLoadError(f"{name}: image has zero size ({w}x{h})")
    if w * h > max_pixels:
        raise ImageLoadError(
            f"{name}: image is {w}x{h} = {w * h / 1e6:.0f} MP, over the {max_pixels / 1e6:.0f} MP limit; "
            f"downscale it first (or raise max_pixels if you trust the file)"
        )


def _from_pil(im: Image.Image, name: str, max_pixels: int) -> np.ndarray:
    _check_size(im.size, name, max_pixels)
    try:
        im = ImageOps.exif_transpose(im) or im
    except Exception as err:  # broken EXIF must not make the pixels unusable
        warnings.warn(f"{name}: ignoring unreadable EXIF orientation ({err})", stacklevel=3)
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(im).astype(np.float64)
        return _gray_to_rgb(_scale16(np.clip(values, 0, 65535)))
    if mode == "F":
        return _gray_to_rgb(_float_to_u8(np.asarray(im, dtype=np.float64), name))
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("1", "L"):
        return _gray_to_rgb(np.asarray(im.convert("L"), dtype=np.uint8))
    elif mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    elif mode not in ("RGBA",):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX ...
    if im.mode == "RGBA":
        return _composite_on_white(np.asarray(im, dtype=np.uint8))
    return np.asarray(im, dtype=np.uint8).copy()


def _from_array(arr: np.ndarray, name: str, max_pixels: int) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4):
        hint = " (channels first? use arr.transpose(1, 2, 0))" if arr.shape[0] in (1, 3, 4) else ""
        raise ImageLoadError(
            f"{name}: expected [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {arr.shape}{hint}"
        )
    if arr.ndim not in (2, 3):
        raise ImageLoadError(f"{name}: expected a 2-D or 3-D image array, got shape {arr.shape}")
    _check_size((arr.shape[1], arr.shape[0]), name, max_pixels)
    if arr.dtype == np.uint8:
        u8 = arr
    elif arr.dtype == np.bool_:
        u8 = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        u8 = _scale16(arr.astype(np.float64))
    elif np.issubdtype(arr.dtype, np.floating):
        u8 = _float_to_u8(arr.astype(np.float64), name)
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ImageLoadError(
                f"{name}: {arr.dtype} values span {arr.min()}..{arr.max()}, outside 0..255; pass uint8, "
                f"uint16 or float in [0, 1]"
            )
        u8 = arr.astype(np.uint8)
    else:
        raise ImageLoadError(f"{name}: unsupported array dtype {arr.dtype}")
    if u8.ndim == 2:
        return _gray_to_rgb(u8)
    if u8.shape[-1] == 1:
        return _gray_to_rgb(u8[..., 0])
    if u8.shape[-1] == 4:
        return _composite_on_white(u8)
    return np.ascontiguousarray(u8)


def _scale16(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 (divide by 257, round)."""
    return np.rint(values / 257.0).astype(np.uint8)


def _float_to_u8(values: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ImageLoadError(f"{name}: float image contains NaN or infinite values")
    lo, hi = float(values.min()), float(values.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ImageLoadError(
            f"{name}: float image values span {lo:.3g}..{hi:.3g}; float images must be in [0, 1] "
            f"(divide 0..255 data by 255, or pass uint8)"
        )
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``[H, W, 4]`` uint8 -> ``[H, W, 3]``: ``rgb * a + 255 * (1 - a)``."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + np.float32(_WHITE[0]) * (1.0 - alpha)
    return np.rint(rgb).astype(np.uint8)


def fit_long_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink ``image`` (``[H, W, 3]`` uint8) so its longer side is at most ``max_side`` pixels.

    Returns:
        ``(resized, scale)``; ``scale <= 1`` maps original pixel coordinates to resized ones
        (``x_resized = x * scale``). Images that already fit are returned as they are with ``scale = 1.0``.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    h, w = image.shape[:2]
    long_side = max(h, w)
    if long_side <= max_side:
        return image, 1.0
    scale = max_side / long_side
    new_w, new_h = max(1, math.floor(w * scale + 0.5)), max(1, math.floor(h * scale + 0.5))
    resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(resized, dtype=np.uint8), scale
