"""A candidate's mask probabilities kept at the mask head's stride until a caller needs them at full size.

Upsampling the stride-8 probabilities to a 1024x768 network input and thresholding them costs about 1 ms of a
~9 ms repeat tap, although most of the map is far from any pixel that passes 0.5. :class:`TensorMaskProbs` is the
PyTorch arithmetic of :class:`~tracenet.tap.masks.StrideMaskProbs`, which gives the mask from a crop around the
cells that pass 0.5, equal to the whole map's ``> 0.5`` bit for bit (``tests/model/test_mask_probs.py``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tracenet.model.dynamic_head import upsample_cells, upsample_mask_probs
from tracenet.tap.masks import StrideMaskProbs


class TensorMaskProbs(StrideMaskProbs):
    """Probabilities ``sigmoid`` + 4x + 2x bilinear (:func:`~tracenet.model.dynamic_head.upsample_mask_probs`) of
    stride-8 mask ``logits float32 [H_3, W_3]`` for an ``hw = (H, W)`` network input, zero outside ``keep``
    (``(r0, r1, c0, c1)`` in stride-8 cells, end exclusive: the box window of ``mask_region="box"``) when given.
    ``dense()`` is a ``float32 [H, W]`` tensor."""

    def __init__(self, logits: Tensor, hw: tuple[int, int], keep: tuple[int, int, int, int] | None = None) -> None:
        super().__init__(hw, keep)
        self.logits = logits
        self._sigmoid: Tensor | None = None

    def _cell_probs(self) -> Tensor:
        if self._sigmoid is None:
            with torch.no_grad():  # the same call on the same tensor as upsample_mask_probs: the same values
                self._sigmoid = self.logits.sigmoid()
        return self._sigmoid

    def _cells(self) -> np.ndarray:
        return (self._cell_probs() > 0.5).numpy()

    def _upsample(self, rows: slice, cols: slice) -> np.ndarray:
        with torch.no_grad():
            return upsample_cells(self._cell_probs()[rows, cols].contiguous()[None])[0].numpy()

    def _whole(self) -> Tensor:
        with torch.no_grad():
            return upsample_mask_probs(self.logits[None], self.hw)[0]
