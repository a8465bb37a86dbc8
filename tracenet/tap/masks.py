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
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for very negative logits: probability 0, as wanted
        probs = (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float32)))).astype(np.float32)
    probs = resize_bilinear(probs, (rows * 4, cols * 4), scale_factor=4)
    probs = resize_bilinear(probs, (rows * 8, cols * 8), scale_factor=2)
    return probs[..., :h, :w]


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
