"""Writing masks and mask overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracenet.io.outputs import encode_image, write_all

DEFAULT_COLOR = (30, 144, 255)  # dodger blue
_SUFFIX_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def _check_mask(mask: np.ndarray, hw: tuple[int, int] | None = None) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D [H, W] array, got shape {mask.shape}")
    if hw is not None and mask.shape != hw:
        raise ValueError(f"mask is {mask.shape[0]}x{mask.shape[1]} but the image is {hw[0]}x{hw[1]}")
    return mask.astype(bool)


def _check_suffix(path: Path) -> str:
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported suffix {path.suffix!r}; use one of {sorted(_SUFFIX_FORMATS)}")
    return fmt


def save_mask_png(mask: np.ndarray, path: str | Path) -> Path:
    """Save a ``[H, W]`` boolean mask as an 8-bit grayscale PNG (0 background, 255 mask).

    Parent folders are created. Returns the path written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: masks are saved as PNG (lossless); use a .png suffix")
    write_all([(path, encode_image(_check_mask(mask), ".png"))])  # atomic: never a half-written mask
    return path


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask (image borders count as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = DEFAULT_COLOR,
    alpha: float = 0.5,
    *,
    outline: bool = True,
) -> np.ndarray:
    """Tint the mask on top of the image.

    Args:
        image: ``uint8 [H, W, 3]`` RGB.
        mask: ``[H, W]`` bool (anything non-zero counts as mask).
        color: RGB tint.
        alpha: tint opacity in [0, 1] inside the mask.
        outline: also draw the mask's 1-pixel boundary in ``color`` at full opacity.

    Returns:
        ``uint8 [H, W, 3]`` RGB, a new array (``image`` is not modified).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    m = _check_mask(mask, image.shape[:2])
    tint = np.asarray(color, dtype=np.float32).reshape(1, 3)
    out = image.copy()
    blended = image[m].astype(np.float32) * (1.0 - alpha) + tint * alpha
    out[m] = np.rint(blended).astype(np.uint8)
    if outline:
        out[_boundary(m)] = np.asarray(color, dtype=np.uint8)
    return out


def save_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    path: str | Path,
    *,
    color: tuple[int, int, int] = DEFAULT_COLOR,
    alpha: float = 0.5,
    outline: bool = True,
    quality: int = 92,
) -> Path:
    """Write :func:`overlay` to ``path``; JPEG for ``.jpg`` / ``.jpeg`` (with ``quality``), PNG for ``.png``."""
    path = Path(path)
    fmt = _check_suffix(path)
    out = overlay(image, mask, color, alpha, outline=outline)
    kwargs = {"quality": quality} if fmt == "JPEG" else {}
    write_all([(path, encode_image(out, path.suffix, **kwargs))])
    return path
