"""CondInst dynamic mask head: three 1x1 convolutions whose 169 parameters are predicted per instance.

Layout of the 169 parameters (docs/ARCHITECTURE.md), each weight block row-major ``[out, in]``::

    [  0: 80)  layer-1 weights 8 x 10   (input: 8 mask_feats channels + 2 relative coordinates, x first)
    [ 80:144)  layer-2 weights 8 x 8
    [144:152)  layer-3 weights 1 x 8
    [152:160)  layer-1 biases 8
    [160:168)  layer-2 biases 8
    [168:169)  layer-3 bias   1

Used by inference (one tap) and training (many instances) alike.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from tracenet.model.geometry import SIZES_OF_INTEREST

MASK_CHANNELS = 8
REL_COORD_CHANNELS = 2
# (in, out) of the three 1x1 convolutions.
LAYER_SHAPES: tuple[tuple[int, int], ...] = (
    (MASK_CHANNELS + REL_COORD_CHANNELS, 8),
    (8, 8),
    (8, 1),
)
WEIGHT_COUNTS: tuple[int, ...] = tuple(i * o for i, o in LAYER_SHAPES)  # 80, 64, 8
BIAS_COUNTS: tuple[int, ...] = tuple(o for _, o in LAYER_SHAPES)  # 8, 8, 1
DYNAMIC_PARAM_COUNT = sum(WEIGHT_COUNTS) + sum(BIAS_COUNTS)
assert DYNAMIC_PARAM_COUNT == 169


def split_dynamic_params(params: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Cut ``params [N, 169]`` into grouped-conv weights and biases for N instances.

    Returns:
        ``weights``: 3 tensors shaped ``[N * out, in, 1, 1]`` (``[N*8, 10, 1, 1]``, ``[N*8, 8, 1, 1]``,
        ``[N, 8, 1, 1]``), instance-major, so ``weights[0][n * 8 + o, i] == params[n, o * 10 + i]``.
        ``biases``: 3 tensors shaped ``[N * out]`` (``[N*8]``, ``[N*8]``, ``[N]``).
    """
    if params.dim() != 2 or params.shape[1] != DYNAMIC_PARAM_COUNT:
        raise ValueError(f"dynamic params must be [N, {DYNAMIC_PARAM_COUNT}], got {tuple(params.shape)}")
    n = params.shape[0]
    chunks = torch.split(params, list(WEIGHT_COUNTS) + list(BIAS_COUNTS), dim=1)
    weights = [chunks[i].reshape(n * out_ch, in_ch, 1, 1) for i, (in_ch, out_ch) in enumerate(LAYER_SHAPES)]
    biases = [chunks[len(LAYER_SHAPES) + i].reshape(n * out_ch) for i, (_, out_ch) in enumerate(LAYER_SHAPES)]
    return weights, biases


def relative_coords(
    locations_xy: Tensor, levels: Tensor, grid_hw: tuple[int, int], stride: int = 8
) -> Tensor:
    """Relative coordinates of every mask-grid cell to each instance's location.

    Args:
        locations_xy: ``[N, 2]`` instance locations ``(x, y)`` in image pixels.
        levels: ``[N]`` long, pyramid level index 0..4 for P3..P7 (selects the size of interest).
        grid_hw: ``(rows, cols)`` of the mask grid (P3).
        stride: stride of the mask grid; cell ``(row, col)`` sits at pixel ``(col*s + s//2, row*s + s//2)``.

    Returns:
        ``[N, 2, rows, cols]``: channel 0 ``(x_loc - x_px) / soi``, channel 1 ``(y_loc - y_px) / soi``.
    """
    rows, cols = grid_hw
    device, dtype = locations_xy.device, locations_xy.dtype
    xs = torch.arange(cols, device=device, dtype=dtype) * stride + stride // 2
    ys = torch.arange(rows, device=device, dtype=dtype) * stride + stride // 2
    soi = torch.tensor(SIZES_OF_INTEREST, device=device, dtype=dtype)[levels.long()]  # [N]
    dx = (locations_xy[:, 0, None] - xs[None, :]) / soi[:, None]  # [N, cols]
    dy = (locations_xy[:, 1, None] - ys[None, :]) / soi[:, None]  # [N, rows]
    n = locations_xy.shape[0]
    return torch.stack([dx[:, None, :].expand(n, rows, cols), dy[:, :, None].expand(n, rows, cols)], dim=1)


def dynamic_mask_logits(
    mask_feats: Tensor, params: Tensor, image_index: Tensor, locations_xy: Tensor, levels: Tensor
) -> Tensor:
    """Run each instance's dynamic mask head over its image's mask features.

    Args:
        mask_feats: ``[B, 8, H_3, W_3]`` mask-branch output (stride 8).
        params: ``[N, 169]`` dynamic parameters, one row per instance.
        image_index: ``[N]`` long, which image of the batch each instance belongs to.
        locations_xy: ``[N, 2]`` instance locations ``(x, y)`` in image pixels.
        levels: ``[N]`` long, level index 0..4 (P3..P7) each instance was predicted on.

    Returns:
        ``[N, H_3, W_3]`` mask logits at stride 8 (three 1x1 convolutions per instance, ReLU between them).
    """
    if mask_feats.dim() != 4 or mask_feats.shape[1] != MASK_CHANNELS:
        raise ValueError(f"mask_feats must be [B, {MASK_CHANNELS}, H, W], got {tuple(mask_feats.shape)}")
    n = params.shape[0]
    rows, cols = mask_feats.shape[-2:]
    if n == 0:
        return mask_feats.new_zeros((0, rows, cols))
    for name, t in (("image_index", image_index), ("locations_xy", locations_xy), ("levels", levels)):
        if t.shape[0] != n:
            raise ValueError(f"{name} has {t.shape[0]} rows but params has {n}")
    rel = relative_coords(locations_xy.to(mask_feats.dtype), levels, (rows, cols))
    # each instance's three 1x1 convolutions as batched matrix products over its [10, H*W] input: the same sums
    # as grouped convolutions (up to float32 summation order) at a third of their time on CPU, where a grouped
    # 1x1 convolution of a channels-last map is slow (0.8 vs 0.3 ms for one tap's 96x128 map, 2 threads)
    x = torch.cat([mask_feats[image_index.long()], rel], dim=1).reshape(n, LAYER_SHAPES[0][0], rows * cols)
    weights, biases = split_dynamic_params(params.to(mask_feats.dtype))
    last = len(LAYER_SHAPES) - 1
    for i, (in_ch, out_ch) in enumerate(LAYER_SHAPES):
        x = torch.baddbmm(biases[i].reshape(n, out_ch, 1), weights[i].reshape(n, out_ch, in_ch), x)
        if i < last:
            x = F.relu(x)
    return x.reshape(n, rows, cols)


def upsample_mask_probs(logits: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """Turn stride-8 mask logits into per-pixel probabilities for an ``H x W`` image.

    ``sigmoid``, 4x bilinear upsampling (``align_corners=False``) to stride 2 as in the paper, then 2x bilinear
    to stride 1. The stride-8 grid of ``ceil(H/8) x ceil(W/8)`` cells covers ``ceil(H/8)*8 x ceil(W/8)*8``
    pixels (the bottom/right cells stick out of odd-sized images), so the full-resolution map is cropped to
    its top-left ``H x W`` rather than stretched, which keeps cell ``(row, col)`` over pixels
    ``[8*row, 8*row + 8) x [8*col, 8*col + 8)``.

    Args:
        logits: ``[N, H_3, W_3]`` with ``H_3 = ceil(H / 8)``, ``W_3 = ceil(W / 8)``.
        image_hw: ``(H, W)`` of the network input.

    Returns:
        ``[N, H, W]`` probabilities in [0, 1]; threshold at 0.5 for a mask.
    """
    h, w = image_hw
    rows, cols = logits.shape[-2:]
    if rows * 8 < h or cols * 8 < w or (rows - 1) * 8 >= h or (cols - 1) * 8 >= w:
        raise ValueError(
            f"mask logits grid {rows}x{cols} does not belong to a {h}x{w} image (expected "
            f"{-(-h // 8)}x{-(-w // 8)} = ceil(H/8) x ceil(W/8))"
        )
    return upsample_cells(logits.sigmoid())[:, :h, :w]


def upsample_cells(probs: Tensor) -> Tensor:
    """Stride-8 probabilities ``[N, rows, cols]`` -> ``[N, 8 * rows, 8 * cols]``: 4x bilinear (``align_corners=False``),
    then 2x bilinear (the upsampling of :func:`upsample_mask_probs`, for a whole grid or a crop of one)."""
    probs = F.interpolate(probs[:, None], scale_factor=4, mode="bilinear", align_corners=False)
    probs = F.interpolate(probs, scale_factor=2, mode="bilinear", align_corners=False)
    return probs[:, 0]
