"""Pyramid geometry shared by the model, the tap logic and training.

Conventions (docs/ARCHITECTURE.md): level ``l`` in 3..7 has stride ``2**l`` and a grid of
``(ceil(H / s), ceil(W / s))`` cells for an ``H x W`` input; grid cell ``(row, col)`` sits at image pixel
``(x, y) = (col * s + s // 2, row * s + s // 2)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LEVELS: tuple[int, ...] = (3, 4, 5, 6, 7)
STRIDES: tuple[int, ...] = tuple(2**level for level in LEVELS)
# CondInst / FCOS sizes of interest, used to normalise the relative coordinates of the dynamic head.
SIZES_OF_INTEREST: tuple[int, ...] = (64, 128, 256, 512, 1024)


def grid_hw(image_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """Grid size ``(rows, cols) = (ceil(H / stride), ceil(W / stride))`` of one level for an ``H x W`` image."""
    h, w = image_hw
    return math.ceil(h / stride), math.ceil(w / stride)


def pyramid_hw(image_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Grid sizes ``(rows, cols)`` of P3..P7 for an ``H x W`` image."""
    return [grid_hw(image_hw, s) for s in STRIDES]


def locations(
    level_hw: list[tuple[int, int]],
    strides: tuple[int, ...] | list[int] = STRIDES,
    *,
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """Image-pixel positions of every grid cell, per level.

    Args:
        level_hw: ``(rows, cols)`` of each level's grid.
        strides: the stride of each level (same length as ``level_hw``).

    Returns:
        One ``float32 Tensor[rows * cols, 2]`` per level holding ``(x, y)`` pixel coordinates
        ``(col * s + s // 2, row * s + s // 2)``, cells in row-major order (index ``row * cols + col``),
        the order of ``tensor.flatten(-2)`` on a ``[..., rows, cols]`` feature map.
    """
    if len(level_hw) != len(strides):
        raise ValueError(f"got {len(level_hw)} level sizes but {len(strides)} strides")
    out = []
    for (rows, cols), s in zip(level_hw, strides, strict=True):
        ys = torch.arange(rows, dtype=torch.float32, device=device) * s + s // 2
        xs = torch.arange(cols, dtype=torch.float32, device=device) * s + s // 2
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        out.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
    return out
