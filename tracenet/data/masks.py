"""Segmentation decoding (polygons, RLE) and small numpy mask helpers."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["decode_segmentation", "masks_to_boxes", "resize_masks"]


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """Decode one COCO/LVIS segmentation to a ``[height, width]`` bool mask.

    Accepts polygons (list of flat ``[x0, y0, x1, y1, ...]`` lists in image pixels, parts merged), uncompressed
    RLE (``{"counts": [int, ...], "size": [h, w]}``) and compressed RLE (``counts`` str or bytes).
    """
    if isinstance(segmentation, list):
        polys = [p for p in segmentation if len(p) >= 6]  # pycocotools rejects degenerate polygons
        if not polys:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(segmentation, dict):
        if tuple(segmentation["size"]) != (height, width):
            raise ValueError(
                f"RLE size {segmentation['size']} does not match the image size {(height, width)}"
            )
        counts = segmentation["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {
                "size": segmentation["size"],
                "counts": counts.encode() if isinstance(counts, str) else counts,
            }
    else:
        raise TypeError(f"unsupported segmentation of type {type(segmentation).__name__}")
    with warnings.catch_warnings():  # pycocotools vs numpy 2 "copy keyword" deprecation noise
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight boxes of ``masks [N, H, W]`` bool as ``[N, 4]`` float32 ``(x0, y0, x1, y1)`` in pixel edges: a mask
    covering columns ``a .. b`` gives ``x0 = a, x1 = b + 1``. Empty masks give all zeros."""
    n = masks.shape[0]
    boxes = np.zeros((n, 4), dtype=np.float32)
    if n == 0:
        return boxes
    cols = masks.any(axis=1)  # [N, W]
    rows = masks.any(axis=2)  # [N, H]
    nonempty = cols.any(axis=1)
    w, h = masks.shape[2], masks.shape[1]
    x0 = cols.argmax(axis=1)
    x1 = w - cols[:, ::-1].argmax(axis=1)
    y0 = rows.argmax(axis=1)
    y1 = h - rows[:, ::-1].argmax(axis=1)
    boxes[:] = np.stack([x0, y0, x1, y1], axis=1)
    boxes[~nonempty] = 0
    return boxes


def resize_masks(masks: np.ndarray, size_hw: Sequence[int]) -> np.ndarray:
    """Resize bool ``masks [N, H, W]`` (or ``[H, W]``) to ``size_hw = (h, w)``: bilinear on 0/255 then threshold
    at half (thin parts survive better than with nearest)."""
    h, w = int(size_hw[0]), int(size_hw[1])
    single = masks.ndim == 2
    m = masks[None] if single else masks
    if m.shape[1:] == (h, w):
        return masks.copy()
    out = np.zeros((m.shape[0], h, w), dtype=bool)
    # cv2 works on HxWxC with at most 512 channels
    for i in range(0, m.shape[0], 512):
        chunk = np.ascontiguousarray(m[i : i + 512].transpose(1, 2, 0)).astype(np.uint8) * 255
        r = cv2.resize(chunk, (w, h), interpolation=cv2.INTER_LINEAR)
        if r.ndim == 2:
            r = r[:, :, None]
        out[i : i + 512] = r.transpose(2, 0, 1) >= 128
    return out[0] if single else out
