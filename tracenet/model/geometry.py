"""Pyramid geometry shared by the model, the tap logic and training.

Conventions (docs/ARCHITECTURE.md): level ``l`` in 3..7 has stride ``2**l`` and a grid of
``(ceil(H / s), ceil(W / s))`` cells for an ``H x W`` input; grid cell ``(row, col)`` sits at image pixel
``(x, y) = (col * s + s // 2, row * s + s // 2)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

# the constants and grid sizes live with the torch-free predictor core
from tracenet.tap.geometry import LEVELS, SIZES_OF_INTEREST, STRIDES, grid_hw

__all__ = ["LEVELS", "SIZES_OF_INTEREST", "STRIDES", "grid_hw", "locations", "pyramid_hw"]


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
