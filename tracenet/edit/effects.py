"""Photo edits driven by one instance mask: the edits the one-tap task is for (paper, sec. 1).

Every effect is a pure function ``effect(image, mask, **options) -> np.ndarray``:

- ``image``: ``H x W x 3`` ``uint8`` RGB (not modified).
- ``mask``: ``H x W`` ``bool``, True on the subject (the object that was tapped).
- result: a new ``H x W x 3`` ``uint8`` RGB array (``H x W x 4`` RGBA for :func:`cutout_rgba`).

Edges are feathered: the hard mask is turned into a soft alpha (a Gaussian blur of ``feather`` pixels,
:func:`soft_alpha`) so the subject does not look cut out with scissors. Pixels more than about
``2 * feather`` pixels inside the subject are bit-for-bit unchanged by every effect; pixels that far outside
are pure background.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

__all__ = [
    "EFFECTS",
    "MAX_FEATHER",
    "apply_effect",
    "blur_background",
    "color_splash",
    "composite",
    "cutout_rgba",
    "replace_background",
    "soft_alpha",
]

DEFAULT_FEATHER = 1.5
MAX_FEATHER = 50.0
"""Largest edge softness in pixels (the Gaussian's work grows with its square; 50 px is soft on any photo)."""
"""Default edge softness in pixels (sigma of the Gaussian applied to the mask)."""

_WORK_RADIUS = 6.0  # largest disk radius (pixels) blurred at full resolution
_ALPHA_SNAP = 1.0 / 512.0  # alpha this close to 0 or 1 is snapped, so far pixels stay exact


def _check(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate an ``H x W x 3`` uint8 image and an ``H x W`` mask; return them as (uint8, bool) arrays."""
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be an H x W x 3 uint8 RGB array, got shape {image.shape} dtype {image.dtype}; "
            "load it with tracenet.edit.images.load_rgb()"
        )
    if mask.shape != image.shape[:2]:
        raise ValueError(
            f"mask shape {mask.shape} does not match the image's H x W {image.shape[:2]}; "
            "predict the mask on this same image"
        )
    return image, mask.astype(bool, copy=False)


def soft_alpha(mask: np.ndarray, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """Feathered alpha of a mask.

    Args:
        mask: ``H x W`` bool, True on the subject.
        feather: edge softness in pixels (Gaussian sigma); ``0`` gives the hard mask.

    Returns:
        ``H x W`` float32 in ``[0, 1]``; exactly 1 deep inside the subject and exactly 0 far outside.
    """
    if not 0 <= feather <= MAX_FEATHER:
        raise ValueError(f"feather must be in [0, {MAX_FEATHER:g}] pixels, got {feather}")
    alpha = np.asarray(mask, dtype=bool).astype(np.float32)
    if feather == 0 or not alpha.any():
        return alpha
    # Blur only the mask's bounding box plus the kernel's reach (cv2 truncates the Gaussian at 4 sigma):
    # outside it the alpha is 0 anyway. Same result as blurring the whole image, much faster for small subjects.
    ys, xs = np.nonzero(alpha.any(axis=1))[0], np.nonzero(alpha.any(axis=0))[0]
    pad = int(np.ceil(4 * feather)) + 2
    y0, y1 = max(0, ys[0] - pad), min(alpha.shape[0], ys[-1] + 1 + pad)
    x0, x1 = max(0, xs[0] - pad), min(alpha.shape[1], xs[-1] + 1 + pad)
    crop = cv2.GaussianBlur(
        alpha[y0:y1, x0:x1], (0, 0), sigmaX=float(feather), borderType=cv2.BORDER_REPLICATE
    )
    crop[crop < _ALPHA_SNAP] = 0.0
    crop[crop > 1.0 - _ALPHA_SNAP] = 1.0
    alpha[y0:y1, x0:x1] = crop
    return alpha


def composite(foreground: np.ndarray, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * foreground + (1 - alpha) * background``, rounded to uint8.

    Args:
        foreground, background: ``H x W x 3`` (uint8, or float with values in 0..255).
        alpha: ``H x W`` float in ``[0, 1]``.

    Returns:
        ``H x W x 3`` uint8; where ``alpha`` is exactly 1 (0) the foreground (background) is copied unchanged.
    """
    fg, bg = (_to_uint8(a) for a in (foreground, background))
    a = np.ascontiguousarray(alpha, dtype=np.float32)
    return cv2.blendLinear(fg, bg, a, 1.0 - a)  # multi-threaded, exact where a is 0 or 1


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _disk_kernel(radius: int) -> np.ndarray:
    """Normalised flat disk of ``radius`` pixels: the shape of an out-of-focus lens highlight."""
    size = 2 * radius + 1
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = ((xx**2 + yy**2) <= radius**2 + 0.5).astype(np.float32)
    if size >= 3:  # soften the rim a little, like a real lens
        disk = cv2.GaussianBlur(disk, (3, 3), 0)
    return disk / disk.sum()


def blur_background(
    image: np.ndarray, mask: np.ndarray, strength: float = 0.5, *, feather: float = DEFAULT_FEATHER
) -> np.ndarray:
    """Depth-of-field look: the subject stays sharp, the background is blurred with a lens-like disk.

    The background is blurred with the subject cut out (normalised convolution), so the subject's colours do
    not bleed into the blurred background as a halo.

    Args:
        image: ``H x W x 3`` uint8 RGB.
        mask: ``H x W`` bool subject mask.
        strength: 0 (no blur) .. 1 (strong). The disk radius is ``strength * max(H, W) / 40`` pixels
            (12 px for a 960 px wide photo at 0.5).
        feather: edge softness in pixels.

    Returns:
        ``H x W x 3`` uint8 RGB.
    """
    image, mask = _check(image, mask)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1] (0 = no blur, 1 = strong), got {strength}")
    h, w = image.shape[:2]
    radius = strength * max(h, w) / 40.0
    if radius < 0.5:
        return image.copy()
    weight = (~mask).astype(np.float32)
    if not weight.any():  # the subject fills the frame: nothing to blur
        return image.copy()
    # Big radii are blurred on a downscaled copy (a disk of _WORK_RADIUS px) and scaled back: same look,
    # ~100x faster on a 12 MP photo. Downscaling image * weight and weight separately keeps the subject out.
    scale = min(1.0, _WORK_RADIUS / radius)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2 sizes are (width, height)
    weighted = image.astype(np.float32) * weight[..., None]
    plain = image.astype(np.float32)
    if scale < 1.0:
        weighted, weight, plain = (
            cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in (weighted, weight, plain)
        )
    kernel = _disk_kernel(max(1, round(radius * scale)))
    border = cv2.BORDER_REFLECT
    num = cv2.filter2D(weighted, -1, kernel, borderType=border)
    den = cv2.filter2D(weight, -1, kernel, borderType=border)
    # Deep inside the subject the background weight is 0: fall back to a plain blur there (never visible
    # once composited, but keeps the values finite and sensible).
    plain = cv2.filter2D(plain, -1, kernel, borderType=border)
    blurred = _to_uint8(np.where((den > 1e-3)[..., None], num / np.maximum(den, 1e-6)[..., None], plain))
    if scale < 1.0:
        blurred = cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)
    return composite(image, blurred, soft_alpha(mask, feather))


def _cover(background: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``background`` (``h x w x 3``) to cover ``height x width`` keeping its aspect, centre-cropped."""
    bh, bw = background.shape[:2]
    scale = max(height / bh, width / bw)
    nh, nw = max(height, int(round(bh * scale))), max(width, int(round(bw * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(background, (nw, nh), interpolation=interp)  # cv2 sizes are (width, height)
    y0, x0 = (nh - height) // 2, (nw - width) // 2
    return resized[y0 : y0 + height, x0 : x0 + width]


def replace_background(
    image: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] | None = None,
    *,
    background: np.ndarray | None = None,
    feather: float = DEFAULT_FEATHER,
) -> np.ndarray:
    """Put the subject on a plain colour or on another picture.

    Args:
        image: ``H x W x 3`` uint8 RGB.
        mask: ``H x W`` bool subject mask.
        color: ``(r, g, b)`` in 0..255; white when neither ``color`` nor ``background`` is given.
        background: ``h x w x 3`` uint8 RGB picture, any size: scaled to cover the image, centre-cropped.
        feather: edge softness in pixels.

    Returns:
        ``H x W x 3`` uint8 RGB.
    """
    image, mask = _check(image, mask)
    h, w = image.shape[:2]
    if color is not None and background is not None:
        raise ValueError("give either color=(r, g, b) or background=image, not both")
    if background is not None:
        background = np.asarray(background)
        if background.ndim != 3 or background.shape[2] != 3 or background.dtype != np.uint8:
            raise ValueError(
                f"background must be an h x w x 3 uint8 RGB array, got shape {background.shape} "
                f"dtype {background.dtype}"
            )
        if min(background.shape[:2]) < 1:
            raise ValueError(f"background image is empty (shape {background.shape})")
        back = _cover(background, h, w)
    else:
        rgb = (255, 255, 255) if color is None else tuple(color)
        if len(rgb) != 3 or not all(0 <= int(c) <= 255 for c in rgb):
            raise ValueError(f"color must be three integers (r, g, b) in 0..255, got {color!r}")
        back = np.empty_like(image)
        back[...] = np.asarray(rgb, dtype=np.uint8)
    return composite(image, back, soft_alpha(mask, feather))


def color_splash(image: np.ndarray, mask: np.ndarray, *, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """Subject in colour, background in grey (ITU-R BT.601 luma, so background pixels have R == G == B).

    Args:
        image: ``H x W x 3`` uint8 RGB.
        mask: ``H x W`` bool subject mask.
        feather: edge softness in pixels.

    Returns:
        ``H x W x 3`` uint8 RGB.
    """
    image, mask = _check(image, mask)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return composite(image, np.repeat(grey[..., None], 3, axis=2), soft_alpha(mask, feather))


def cutout_rgba(image: np.ndarray, mask: np.ndarray, *, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """The subject on a transparent background, for saving as an alpha PNG.

    Args:
        image: ``H x W x 3`` uint8 RGB.
        mask: ``H x W`` bool subject mask.
        feather: edge softness in pixels; with ``0`` the alpha channel is exactly ``255 * mask``.

    Returns:
        ``H x W x 4`` uint8 RGBA; RGB is the original image, A the (feathered) mask.
    """
    image, mask = _check(image, mask)
    alpha = np.clip(np.rint(soft_alpha(mask, feather) * 255.0), 0, 255).astype(np.uint8)
    return np.dstack([image, alpha])


EFFECTS: dict[str, Callable[..., np.ndarray]] = {
    "blur": blur_background,
    "replace": replace_background,
    "splash": color_splash,
    "cutout": cutout_rgba,
}
"""Effect name -> function ``(image, mask, **options) -> array``, as used by ``tracenet edit`` and the app."""


def apply_effect(name: str, image: np.ndarray, mask: np.ndarray, **options: Any) -> np.ndarray:
    """Run the effect called ``name`` (a key of :data:`EFFECTS`); unknown names raise a ValueError listing them."""
    try:
        fn = EFFECTS[name]
    except KeyError:
        raise ValueError(f"unknown effect {name!r}; choose one of {', '.join(EFFECTS)}") from None
    return fn(image, mask, **options)
