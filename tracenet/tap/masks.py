"""Numpy versions of the network's pre- and post-processing, for engines that do not run torch.

They follow the PyTorch operations of the model exactly in formula; values agree to float rounding
(``normalize_image`` bit for bit, the bilinear resizes to within 5e-6, tested in ``tests/tap``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MASK_STRIDE = 8


def normalize_image(rgb: np.ndarray) -> np.ndarray:
    """``HxWx3 uint8`` RGB -> ``float32 [1, 3, H, W]``, ``(rgb / 255 - mean) / std`` with ImageNet statistics
    (what :func:`tracenet.model.normalize` computes)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"normalize_image expects an HxWx3 uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    x = rgb.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def _axis_weights(n_in: int, n_out: int, scale: np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of ``align_corners=False`` bilinear sampling along one axis (PyTorch's rule:
    ``src = max(scale * (dst + 0.5) - 0.5, 0)``, the upper neighbour clamped to the last index)."""
    dst = np.arange(n_out, dtype=np.float32)
    src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    i0 = src.astype(np.int64)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    w1 = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    return i0, i1, (np.float32(1.0) - w1).astype(np.float32), w1


def resize_bilinear(x: np.ndarray, out_hw: tuple[int, int], *, scale_factor: int | None = None) -> np.ndarray:
    """Bilinear resize of ``x [..., h, w]`` to ``[..., H, W]`` like ``F.interpolate(mode="bilinear",
    align_corners=False)``; with ``scale_factor`` the source step is ``1 / scale_factor`` (PyTorch's rule when a
    scale factor is given), else ``h / H``. Returns float32."""
    h, w = x.shape[-2:]
    oh, ow = int(out_hw[0]), int(out_hw[1])
    if scale_factor is not None:
        sh = sw = np.float32(1.0 / scale_factor)
    else:
        sh, sw = np.float32(h / oh), np.float32(w / ow)
    r0, r1, a0, a1 = _axis_weights(h, oh, sh)
    c0, c1, b0, b1 = _axis_weights(w, ow, sw)
    x = np.asarray(x, dtype=np.float32)
    # along the width on the h input rows first (as PyTorch orders the arithmetic), then whole output rows along
    # the height: two column gathers of h x W and two row copies of H x W (np.take, in place: 10x less time
    # than four fancy-indexed column gathers of H x W for a 12-megapixel photo)
    across = np.take(x, c0, axis=-1)  # [..., h, W]
    across *= b0
    part = np.take(x, c1, axis=-1)
    part *= b1
    across += part
    out = np.take(across, r0, axis=-2)  # [..., H, W]
    out *= a0[:, None]
    part = np.take(across, r1, axis=-2)
    part *= a1[:, None]
    out += part
    return out


def upsample_mask_probs(logits: np.ndarray, net_hw: tuple[int, int]) -> np.ndarray:
    """Stride-8 mask logits ``[..., ceil(H/8), ceil(W/8)]`` -> probabilities ``float32 [..., H, W]``: sigmoid,
    4x bilinear, 2x bilinear, then the top-left ``H x W`` (the grid overhangs odd sizes; it is cropped, not
    stretched). The rule of :func:`tracenet.model.upsample_mask_probs`."""
    h, w = net_hw
    rows, cols = logits.shape[-2:]
    if rows != -(-h // MASK_STRIDE) or cols != -(-w // MASK_STRIDE):
        raise ValueError(f"mask logits grid {rows}x{cols} does not belong to a {h}x{w} image "
                         f"(expected {-(-h // MASK_STRIDE)}x{-(-w // MASK_STRIDE)})")
    return upsample_cells(sigmoid(logits))[..., :h, :w]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """``float32`` sigmoid of mask logits (``torch.sigmoid``'s formula)."""
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for very negative logits: probability 0, as wanted
        return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float32)))).astype(np.float32)


def upsample_cells(probs: np.ndarray) -> np.ndarray:
    """Stride-8 probabilities ``[..., rows, cols]`` -> ``float32 [..., 8 * rows, 8 * cols]``: 4x bilinear, then 2x
    bilinear (the upsampling of :func:`upsample_mask_probs`, for a whole grid or a crop of one)."""
    rows, cols = probs.shape[-2:]
    probs = resize_bilinear(probs, (rows * 4, cols * 4), scale_factor=4)
    return resize_bilinear(probs, (rows * 8, cols * 8), scale_factor=2)


class DeferredMaskProbs(ABC):
    """Mask probabilities at network-input size ``[H, W]`` that an engine computes only when asked.

    ``dense()`` gives the whole map (``float [H, W]``, numpy or torch); ``above_half()`` the ``HxW bool`` mask
    ``dense() > 0.5``, equal to it bit for bit, which an engine may compute without the pixels that cannot pass
    0.5. The core asks for the mask on every tap and for the map only where it needs the probabilities themselves
    (refinement, the zoom pass, a photo of another size)."""

    hw: tuple[int, int]

    @abstractmethod
    def dense(self) -> Any:
        """The whole probability map ``[H, W]``."""

    @abstractmethod
    def above_half(self) -> np.ndarray:
        """``HxW bool``: ``dense() > 0.5``."""


def dense_probs(probs: Any) -> Any:
    """``probs`` as a whole ``[H, W]`` map: :meth:`DeferredMaskProbs.dense` or the array itself."""
    return probs.dense() if isinstance(probs, DeferredMaskProbs) else probs


CROP_MARGIN = 2  # cells beyond the pixels kept: a kept pixel's interpolation never reaches the crop's edge


class StrideMaskProbs(DeferredMaskProbs):
    """Probabilities of :func:`upsample_mask_probs` (sigmoid, 4x and 2x bilinear) kept at the mask head's stride
    until asked, zero outside ``keep`` (``(r0, r1, c0, c1)`` in stride-8 cells, end exclusive; the box window of
    ``mask_region="box"``) when given. An engine supplies the arithmetic (:meth:`_cells`, :meth:`_upsample`,
    :meth:`_whole`); the geometry is shared here.

    ``above_half()`` upsamples only around the cells whose probability passes 0.5: bilinear weights are
    non-negative and sum to one, so a pixel can pass 0.5 only if one of the stride-8 cells it is interpolated from
    does, and those lie within one cell of the pixel's own. The crop gets :data:`CROP_MARGIN` more cells on each
    side (or the map's own edge, clamped alike) so that no kept pixel sees the crop's edge, and its interpolation
    weights equal the whole map's (integer scale factors: the sampling positions shift by whole pixels), so the
    mask equals ``dense() > 0.5`` bit for bit (tested in ``tests/model/test_mask_probs.py``)."""

    def __init__(self, hw: tuple[int, int], keep: tuple[int, int, int, int] | None = None) -> None:
        self.hw = (int(hw[0]), int(hw[1]))
        self.keep = keep
        self._dense: Any = None

    @abstractmethod
    def _cells(self) -> np.ndarray:
        """``bool [H_3, W_3]``: the cells whose probability (the same values :meth:`_upsample` reads) passes 0.5."""

    @abstractmethod
    def _upsample(self, rows: slice, cols: slice) -> np.ndarray:
        """The 4x + 2x bilinear upsampling of the cells ``[rows, cols]`` alone, ``float [8 * rows, 8 * cols]``."""

    @abstractmethod
    def _whole(self) -> Any:
        """The whole map ``[H, W]`` without ``keep`` applied."""

    def dense(self) -> Any:
        """The whole probability map ``[H, W]`` (computed once)."""
        if self._dense is None:
            probs = self._whole()
            if self.keep is not None:
                r0, r1, c0, c1 = self.keep
                inside = np.zeros(self.hw, dtype=bool)
                inside[r0 * MASK_STRIDE:r1 * MASK_STRIDE, c0 * MASK_STRIDE:c1 * MASK_STRIDE] = True
                probs = _zero_outside(probs, inside)
            self._dense = probs
        return self._dense

    def above_half(self) -> np.ndarray:
        """``HxW bool`` mask ``dense() > 0.5``, upsampling only around the cells whose probability passes 0.5."""
        if self._dense is not None:
            return np.asarray(self._dense > 0.5)
        h, w = self.hw
        mask = np.zeros((h, w), dtype=bool)
        on = self._cells()
        rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
        if not len(rows):
            return mask
        n_rows, n_cols = on.shape
        # pixels that may pass 0.5: the cells passing it and one cell around them
        r0, r1 = max(0, int(rows[0]) - 1), min(n_rows, int(rows[-1]) + 2)
        c0, c1 = max(0, int(cols[0]) - 1), min(n_cols, int(cols[-1]) + 2)
        if self.keep is not None:
            kr0, kr1, kc0, kc1 = self.keep
            r0, r1, c0, c1 = max(r0, kr0), min(r1, kr1), max(c0, kc0), min(c1, kc1)
            if r0 >= r1 or c0 >= c1:
                return mask
        g0, g1 = max(0, r0 - CROP_MARGIN), min(n_rows, r1 + CROP_MARGIN)
        e0, e1 = max(0, c0 - CROP_MARGIN), min(n_cols, c1 + CROP_MARGIN)
        crop = self._upsample(slice(g0, g1), slice(e0, e1))
        y0, y1 = r0 * MASK_STRIDE, min(h, r1 * MASK_STRIDE)
        x0, x1 = c0 * MASK_STRIDE, min(w, c1 * MASK_STRIDE)
        oy, ox = g0 * MASK_STRIDE, e0 * MASK_STRIDE
        mask[y0:y1, x0:x1] = np.asarray(crop[y0 - oy:y1 - oy, x0 - ox:x1 - ox] > 0.5)
        return mask


def _zero_outside(probs: Any, inside: np.ndarray) -> Any:
    """``probs`` (numpy or torch) with zeros where ``inside`` is False."""
    if isinstance(probs, np.ndarray):
        return np.where(inside, probs, np.float32(0.0)).astype(probs.dtype)
    import torch  # only an engine that gave torch values gets here

    keep = torch.from_numpy(inside)
    return torch.where(keep, probs, torch.zeros_like(probs))


class ArrayMaskProbs(StrideMaskProbs):
    """:class:`StrideMaskProbs` of numpy stride-8 mask ``logits [H_3, W_3]`` (the onnxruntime engine's), with
    :func:`upsample_mask_probs`' arithmetic."""

    def __init__(self, logits: np.ndarray, hw: tuple[int, int], keep: tuple[int, int, int, int] | None = None) -> None:
        super().__init__(hw, keep)
        self.logits = logits
        self._sigmoid: np.ndarray | None = None

    def _cell_probs(self) -> np.ndarray:
        if self._sigmoid is None:
            self._sigmoid = sigmoid(self.logits)
        return self._sigmoid

    def _cells(self) -> np.ndarray:
        return self._cell_probs() > 0.5

    def _upsample(self, rows: slice, cols: slice) -> np.ndarray:
        return upsample_cells(self._cell_probs()[rows, cols])

    def _whole(self) -> np.ndarray:
        return upsample_mask_probs(self.logits, self.hw)
