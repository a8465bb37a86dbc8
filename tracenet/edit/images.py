"""Turn untrusted image files into the ``H x W x 3`` uint8 RGB arrays the effects and the model take.

Used by ``tracenet edit`` and by the web app for uploads, so both see exactly the same pixels. Adds to
:func:`tracenet.io.load_image` (which does EXIF orientation and the mode conversions) raw-bytes input, a pixel
limit checked from the header *before* decoding (no decompression bombs), a minimum size, and one error class
per kind of failure, so the app can answer with the right HTTP status.

Every failure is an :class:`ImageError` subclass whose message says what was wrong and what to do.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tracenet.io import ImageLoadError, load_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "EmptyImageError",
    "ImageError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "NotAnImageError",
    "CorruptImageError",
    "encode_png",
    "load_rgb",
]

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest accepted image, in pixels (W * H): a 40 MP photo is ~120 MB as RGB."""

MIN_SIDE = 8
"""Smallest accepted width or height, in pixels."""


class ImageError(ValueError):
    """An input file is not a usable image; the message says why and what to do."""


class EmptyImageError(ImageError):
    """The file has zero bytes."""


class NotAnImageError(ImageError):
    """The bytes are not in any image format Pillow reads."""


class CorruptImageError(ImageError):
    """The header is an image's but the data is truncated or broken."""


class ImageTooLargeError(ImageError):
    """More pixels than allowed."""


class ImageTooSmallError(ImageError):
    """A side smaller than :data:`MIN_SIDE`."""


def load_rgb(
    source: bytes | str | os.PathLike | Image.Image,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    before_decode: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Decode an image into an ``H x W x 3`` uint8 RGB array (EXIF orientation applied).

    Args:
        source: raw file bytes, a path, or a PIL image.
        max_pixels: reject images with more than this many pixels (W * H), checked before decoding.
        name: how to call the input in error messages (default: the path, or "the upload").
        before_decode: called with ``(width, height)`` from the header once the size checks passed and before
            any pixel is decoded (the web app reserves memory there; it may raise to stop).

    Returns:
        ``H x W x 3`` uint8 RGB; ``H``, ``W`` as displayed (after EXIF rotation).

    Raises:
        ImageError: a subclass saying whether the file is empty, not an image, corrupt or too large.
        FileNotFoundError: ``source`` is a path that does not exist.
    """
    if isinstance(source, Image.Image):
        img = source
        label = name or "the image"
    else:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            label = name or str(path)
            if not path.is_file():
                raise FileNotFoundError(f"{label}: no such file")
            data = path.read_bytes()
        else:
            data = bytes(source)
            label = name or "the upload"
        if not data:
            raise EmptyImageError(f"{label} is empty (0 bytes); choose an image file (PNG, JPEG, WebP, ...)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise ImageTooLargeError(
                f"{label} has far more pixels than the limit of {max_pixels / 1e6:.1f} MP; downscale it"
            ) from None
        except UnidentifiedImageError as exc:
            raise NotAnImageError(
                f"{label} is not an image Pillow can read ({exc.__class__.__name__}); "
                "use PNG, JPEG, WebP, BMP, TIFF or GIF"
            ) from None
        except (OSError, SyntaxError, ValueError, struct.error) as exc:
            raise CorruptImageError(
                f"{label} has a broken or truncated header ({exc}); re-export or re-upload the image"
            ) from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageTooLargeError(
            f"{label} is {w}x{h} = {w * h / 1e6:.1f} MP; the limit is {max_pixels / 1e6:.1f} MP. "
            "Downscale it and try again"
        )
    if min(w, h) < MIN_SIDE:
        raise ImageTooSmallError(f"{label} is {w}x{h} pixels; both sides must be at least {MIN_SIDE} pixels")
    if before_decode is not None:
        before_decode(w, h)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(
            f"{label} could not be decoded ({exc}); the file is truncated or damaged, re-export or re-upload it"
        ) from None
    try:  # EXIF orientation and mode conversion: the project's one loader, so CLI, app and eval agree
        rgb = load_image(img, max_pixels=max_pixels)
    except ImageLoadError as exc:
        raise ImageError(f"{label}: {exc}") from None
    return np.ascontiguousarray(rgb)


def encode_png(array: np.ndarray, *, compress_level: int = 1) -> bytes:
    """Encode ``H x W`` (bool or uint8 grey), ``H x W x 3`` (RGB) or ``H x W x 4`` (RGBA) uint8 as PNG bytes.

    Bool masks become 8-bit grey 0/255. ``compress_level`` 1 favours speed (masks compress well anyway).
    """
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(
            f"encode_png takes H x W, H x W x 3 or H x W x 4 uint8 arrays, got {arr.shape} {arr.dtype}"
        )
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
