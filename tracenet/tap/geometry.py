"""Pyramid geometry and tap alignment, in plain Python (no torch).

Conventions (docs/ARCHITECTURE.md): level ``l`` in 3..7 has stride ``2**l`` and a grid of
``(ceil(H / s), ceil(W / s))`` cells for an ``H x W`` network input; grid cell ``(row, col)`` sits at image pixel
``(x, y) = (col * s + s // 2, row * s + s // 2)``.
"""

from __future__ import annotations

import math

LEVELS: tuple[int, ...] = (3, 4, 5, 6, 7)
STRIDES: tuple[int, ...] = tuple(2**level for level in LEVELS)
# CondInst / FCOS sizes of interest, used to normalise the relative coordinates of the dynamic head.
SIZES_OF_INTEREST: tuple[int, ...] = (64, 128, 256, 512, 1024)


def grid_hw(image_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """Grid size ``(rows, cols) = (ceil(H / stride), ceil(W / stride))`` of one level for an ``H x W`` image."""
    h, w = image_hw
    return math.ceil(h / stride), math.ceil(w / stride)


def align_tap(xy: tuple[float, float], image_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Grid cells containing the tap, one per level 3..7.

    Args:
        xy: tap ``(x, y)`` in network-input pixels (floats allowed; the pixel is ``floor``-ed).
        image_hw: ``(H, W)`` of the network input.

    Returns:
        5 ``(row, col)`` tuples, ``(min(y // s, H_l - 1), min(x // s, W_l - 1))`` for ``s = 8..128``, also
        clamped at 0 for taps left of / above the image.
    """
    x, y = float(xy[0]), float(xy[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"tap must be finite (x, y) pixel coordinates, got {xy!r}")
    out = []
    for s in STRIDES:
        rows, cols = grid_hw(image_hw, s)
        row = min(max(int(math.floor(y)) // s, 0), rows - 1)
        col = min(max(int(math.floor(x)) // s, 0), cols - 1)
        out.append((row, col))
    return out
