"""A candidate's mask probabilities kept at the mask head's stride until a caller needs them at full size.

Upsampling the stride-8 probabilities to a 1024x768 network input and thresholding them costs about 1 ms of a
~9 ms repeat tap, although most of the map is far from any pixel that passes 0.5. :class:`CellMaskProbs` gives the
mask without that: bilinear weights are non-negative and sum to one, so a pixel can pass 0.5 only if one of the
stride-8 cells it is interpolated from does, and those cells lie within one cell of the pixel's own. The mask is
computed on a crop around the cells that pass 0.5, with a margin so that no kept pixel sees the crop's edge; the
crop's interpolation weights equal the whole map's (integer scale factors: the sampling positions shift by whole
pixels), so the mask equals ``dense() > 0.5`` bit for bit (``tests/model/test_mask_probs.py``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from tracenet.model.dynamic_head import upsample_mask_probs
from tracenet.tap.masks import DeferredMaskProbs

MASK_STRIDE = 8
CROP_MARGIN = 2  # cells beyond the pixels kept: a kept pixel's interpolation never reaches the crop's edge


class CellMaskProbs(DeferredMaskProbs):
    """Probabilities ``sigmoid`` + 4x + 2x bilinear (:func:`~tracenet.model.dynamic_head.upsample_mask_probs`) of
    stride-8 mask ``logits float32 [H_3, W_3]`` for an ``hw = (H, W)`` network input, zero outside ``keep``
    (``(r0, r1, c0, c1)`` in stride-8 cells, end exclusive: the box window of ``mask_region="box"``) when given."""

    def __init__(self, logits: Tensor, hw: tuple[int, int], keep: tuple[int, int, int, int] | None = None) -> None:
        self.logits = logits
        self.hw = (int(hw[0]), int(hw[1]))
        self.keep = keep
        self._dense: Tensor | None = None

    def dense(self) -> Tensor:
        """``float32 [H, W]`` probabilities (computed once)."""
        if self._dense is None:
            with torch.no_grad():
                probs = upsample_mask_probs(self.logits[None], self.hw)[0]
            if self.keep is not None:
                inside = torch.zeros_like(probs, dtype=torch.bool)
                inside[self._pixels(self.keep)] = True
                probs = torch.where(inside, probs, torch.zeros_like(probs))
            self._dense = probs
        return self._dense

    def above_half(self) -> np.ndarray:
        """``HxW bool`` mask ``dense() > 0.5``, upsampling only around the cells whose probability passes 0.5."""
        if self._dense is not None:
            return (self._dense > 0.5).numpy()
        h, w = self.hw
        mask = np.zeros((h, w), dtype=bool)
        with torch.no_grad():
            cells = self.logits.sigmoid()  # the same call on the same tensor as upsample_mask_probs: same values
            on = cells > 0.5
            if not bool(on.any()):
                return mask
            rows, cols = on.any(dim=1).nonzero()[:, 0], on.any(dim=0).nonzero()[:, 0]
            n_rows, n_cols = cells.shape
            # pixels that may pass 0.5: the cells passing it and one cell around them, in cells [a0, a1)
            r0, r1 = max(0, int(rows[0]) - 1), min(n_rows, int(rows[-1]) + 2)
            c0, c1 = max(0, int(cols[0]) - 1), min(n_cols, int(cols[-1]) + 2)
            if self.keep is not None:
                kr0, kr1, kc0, kc1 = self.keep
                r0, r1, c0, c1 = max(r0, kr0), min(r1, kr1), max(c0, kc0), min(c1, kc1)
                if r0 >= r1 or c0 >= c1:
                    return mask
            # the crop upsampled: CROP_MARGIN more cells on each side (or the map's own edge, clamped alike)
            g0, g1 = max(0, r0 - CROP_MARGIN), min(n_rows, r1 + CROP_MARGIN)
            e0, e1 = max(0, c0 - CROP_MARGIN), min(n_cols, c1 + CROP_MARGIN)
            crop = cells[g0:g1, e0:e1].contiguous()[None, None]
            crop = F.interpolate(crop, scale_factor=4, mode="bilinear", align_corners=False)
            crop = F.interpolate(crop, scale_factor=2, mode="bilinear", align_corners=False)[0, 0]
            y0, y1 = r0 * MASK_STRIDE, min(h, r1 * MASK_STRIDE)
            x0, x1 = c0 * MASK_STRIDE, min(w, c1 * MASK_STRIDE)
            oy, ox = g0 * MASK_STRIDE, e0 * MASK_STRIDE
            mask[y0:y1, x0:x1] = (crop[y0 - oy:y1 - oy, x0 - ox:x1 - ox] > 0.5).numpy()
        return mask

    @staticmethod
    def _pixels(cells: tuple[int, int, int, int]) -> tuple[slice, slice]:
        r0, r1, c0, c1 = cells
        return slice(r0 * MASK_STRIDE, r1 * MASK_STRIDE), slice(c0 * MASK_STRIDE, c1 * MASK_STRIDE)
