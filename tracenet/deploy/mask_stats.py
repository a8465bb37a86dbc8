"""Mask area and "covers the tap" of stride-8 mask logits without upsampling every pixel.

The tap ranker's features count the pixels of each candidate's mask at network-input size (``sigmoid``, bilinear
x4 then x2, threshold 0.5, top-left ``H x W``: :func:`tracenet.model.upsample_mask_probs`). Upsampling every
candidate to full size was most of the ONNX decoder's time. Both bilinear stages are linear with non-negative
weights that sum to one, and the 64 pixels of stride-8 cell ``(r, c)`` read only the probabilities of cells
``r-1..r+1 x c-1..c+1`` (edge-clamped, which equals replicate padding by one cell). So:

- a cell whose 3 x 3 neighbourhood is all ``> 0.5`` has all 64 pixels in the mask; all ``<= 0.5``: none;
- every other cell (the mask's boundary, plus the bottom row / right column when they stick out of the image)
  has its 64 pixels computed exactly as ``neighbourhood [9] @ weights [9, 64]``.

The weights are read off :func:`~tracenet.model.upsample_mask_probs` itself (impulse responses), not written by
hand. The counts equal the upsampled mask's up to float32 summation order (a pixel within ~1e-7 of 0.5 may
flip). Everything here exports to ONNX as plain tensor ops (``NonZero`` and gathers for the boundary cells).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from tracenet.model.dynamic_head import upsample_mask_probs

CELL = 8  # pixels per stride-8 cell side
_SURE_LOGIT = 1e-4  # a logit above this has sigmoid > 0.5 in float32


def cell_pixel_weights() -> Tensor:
    """``float32 [9, 64]``: pixel ``(i, j)`` (column ``i * 8 + j``) of a cell as weights of its 3 x 3 neighbourhood
    (row ``(dr + 1) * 3 + (dc + 1)``), measured by upsampling impulses on a 5 x 5 grid whose centre cell is
    away from every edge. Raises if a pixel reads anything outside the 3 x 3 neighbourhood."""
    n = 5
    impulses = torch.eye(n * n, dtype=torch.float64).reshape(n * n, n, n)
    # upsample_mask_probs applies sigmoid first: feed logits whose sigmoid is the impulse's 0 / 1 exactly enough
    probs = _upsample_probs(impulses)  # [25, 40, 40]
    centre = probs[:, 2 * CELL:3 * CELL, 2 * CELL:3 * CELL].reshape(n * n, CELL * CELL)
    rows = [(r + 2) * n + (c + 2) for r in (-1, 0, 1) for c in (-1, 0, 1)]
    outside = [k for k in range(n * n) if k not in rows]
    if centre[outside].abs().max() > 0:
        raise AssertionError("upsample_mask_probs reads beyond the 3 x 3 neighbourhood of a cell")
    return centre[rows].float()


def _upsample_probs(probs: Tensor) -> Tensor:
    """The two bilinear stages of :func:`upsample_mask_probs` applied to probabilities ``[N, h, w]`` (0 / 1 here):
    they go in as logits (``logit(p)``, infinities clamped to +-1e4) so that its sigmoid returns them."""
    logits = torch.logit(probs.clamp(0, 1), eps=None).nan_to_num(posinf=1e4, neginf=-1e4)
    h, w = probs.shape[-2] * CELL, probs.shape[-1] * CELL
    return upsample_mask_probs(logits, (h, w)).to(probs.dtype)


def mask_area_and_cover(logits: Tensor, net_hw: Tensor, cell_rc: Tensor, weights: Tensor,
                        inside: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Pixel count and tap cover of each candidate's full-size mask.

    Args:
        logits: ``float32 [N, H_3, W_3]`` stride-8 mask logits (``H_3 = ceil(H / 8)``).
        net_hw: ``int64 [2]`` the network input's ``(H, W)``.
        cell_rc: ``int64 [2]`` the tap's ``(row, col)`` on the stride-8 grid.
        weights: :func:`cell_pixel_weights`.
        inside: optional ``bool [N, H_3, W_3]``: the cells whose pixels the mask keeps (the predictor's
            ``mask_region="box"`` zeroes the probabilities of every pixel outside a window of whole cells);
            ``None``: every cell.

    Returns:
        ``areas float32 [N]``: pixels of ``upsample_mask_probs(logits, (H, W)) > 0.5`` (in ``inside`` cells);
        ``covers bool [N]``: that mask has a pixel in the tap's 8 x 8 cell (clipped to ``H x W``).
    """
    n, rows, cols = logits.shape
    # sigmoid(l) > 0.5 exactly when l > 0, except that sigmoid rounds to 0.5 for 0 < l < ~6e-8: "all in" asks
    # for a margin (such cells take the exact path); "all out" (l <= 0 everywhere) needs none
    padded = F.pad(logits[:, None], (1, 1, 1, 1), mode="replicate")  # [N, 1, H_3 + 2, W_3 + 2]
    hi = F.max_pool2d(padded, 3, stride=1)[:, 0]  # [N, H_3, W_3], max of each cell's 3 x 3 neighbourhood
    lo = -F.max_pool2d(-padded, 3, stride=1)[:, 0]
    # cells reaching past the image's bottom / right edge always take the exact path (it drops outside pixels)
    whole = (((torch.arange(rows, dtype=torch.int64) + 1) * CELL <= net_hw[0])[:, None]
             & ((torch.arange(cols, dtype=torch.int64) + 1) * CELL <= net_hw[1])[None, :])  # [H_3, W_3]
    sure = (lo > _SURE_LOGIT) & whole
    if inside is not None:
        sure = sure & inside
    areas = sure.flatten(1).float().sum(dim=1) * float(CELL * CELL)  # (flatten: N may be 0)
    exact = (hi > 0) & ~sure
    if inside is not None:
        exact = exact & inside
    cand = torch.arange(n, dtype=torch.int64)
    tap = torch.stack([cand, cell_rc[0].expand(n), cell_rc[1].expand(n)], dim=1)  # [N, 3]
    cells = torch.cat([torch.nonzero(exact), tap])  # [M + N, 3]: (candidate, row, col)
    counts = _pixels_in_mask(padded, cells, net_hw, weights).float().sum(dim=1)  # [M + N]
    m = counts.shape[0] - n
    areas = areas.scatter_add(0, cells[:m, 0], counts[:m])
    covers = counts[m:] > 0
    if inside is not None:
        covers = covers & inside[:, cell_rc[0], cell_rc[1]]
    return areas, covers


def _pixels_in_mask(padded: Tensor, cells: Tensor, net_hw: Tensor, weights: Tensor) -> Tensor:
    """``bool [M, 64]``: which pixels of cells ``cells [M, 3]`` (candidate, row, col) are in the candidate's
    upsampled mask and inside the ``H x W`` image; ``padded [N, 1, H_3 + 2, W_3 + 2]``: replicate-padded logits."""
    prow, pcol = padded.shape[-2], padded.shape[-1]
    corner = (cells[:, 0] * prow + cells[:, 1]) * pcol + cells[:, 2]  # padded index of the top-left neighbour
    d = torch.arange(3, dtype=torch.int64)
    offsets = (d[:, None] * pcol + d[None, :]).reshape(1, 9)  # (dr + 1, dc + 1), row-major
    hood = padded.reshape(-1).index_select(0, (corner[:, None] + offsets).reshape(-1)).reshape(-1, 9)
    # pixels outside the image (bottom row / right column of cells only) get -2 so they never pass 0.5: one of
    # four patterns per cell (inside, last row, last column, corner) instead of a per-pixel test
    i = torch.arange(CELL, dtype=torch.int64)
    last_r = (prow - 3) * CELL + i < net_hw[0]  # [8] pixel rows of the last cell row inside the image
    last_c = (pcol - 3) * CELL + i < net_hw[1]
    every = torch.ones(CELL, dtype=torch.bool)
    rows_ok = torch.stack([every, every, last_r, last_r])  # [4, 8]: pattern (row is last) * 2 + (col is last)
    cols_ok = torch.stack([every, last_c, every, last_c])
    outside = (~(rows_ok[:, :, None] & cols_ok[:, None, :])).float().reshape(4, CELL * CELL) * -2.0
    kind = (cells[:, 1] == prow - 3).long() * 2 + (cells[:, 2] == pcol - 3).long()  # [M]
    return (hood.sigmoid() @ weights + outside.index_select(0, kind)) > 0.5
