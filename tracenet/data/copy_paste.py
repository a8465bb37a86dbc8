"""Simple copy-paste (Ghiasi et al., CVPR 2021): paste a random subset of another image's instances, no blending."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tracenet.data.transforms import PAD_VALUE, AugmentConfig, Sample, drop_small

__all__ = ["copy_paste"]


def _fit(array: np.ndarray, h: int, w: int, fill) -> np.ndarray:
    """Crop / pad the two leading spatial dims of ``array [H, W, ...]`` to ``[h, w, ...]`` at the top-left."""
    out = np.empty((h, w, *array.shape[2:]), dtype=array.dtype)
    out[...] = fill
    ch, cw = min(h, array.shape[0]), min(w, array.shape[1])
    out[:ch, :cw] = array[:ch, :cw]
    return out


def copy_paste(dst: Sample, src: Sample, rng: np.random.Generator, cfg: AugmentConfig) -> Sample:
    """Paste a random subset of ``src``'s instances onto ``dst``.

    ``src`` is brought to ``dst``'s array size by cropping / padding at the top-left (with LSJ both are already
    ``lsj_size`` squares). Pasted pixels overwrite ``dst``'s image, are removed from ``dst``'s masks and crowd
    ignore region; instances left with fewer than ``cfg.min_mask_area`` pixels are dropped. Pasted instances
    keep their class. The valid region becomes the union (top-left anchored) of both.
    """
    n = src.masks.shape[0]
    if n == 0:
        return dst
    lo, hi = cfg.copy_paste_max_fraction
    k = int(np.clip(round(float(rng.uniform(lo, hi)) * n), 1, n))
    chosen = np.sort(rng.choice(n, size=k, replace=False))
    h, w = dst.image.shape[:2]
    src_masks = _fit(src.masks[chosen].transpose(1, 2, 0), h, w, False).transpose(2, 0, 1)
    src_image = _fit(src.image, h, w, np.array(PAD_VALUE, dtype=np.uint8))
    paste = src_masks.any(axis=0)
    if not paste.any():
        return dst
    image = dst.image.copy()
    image[paste] = src_image[paste]
    masks = np.concatenate([dst.masks & ~paste[None], src_masks], axis=0)
    classes = np.concatenate([dst.classes, src.classes[chosen]])
    valid_hw = (min(h, max(dst.valid_hw[0], src.valid_hw[0])), min(w, max(dst.valid_hw[1], src.valid_hw[1])))
    out = replace(
        dst, image=image, masks=masks, classes=classes, ignore=dst.ignore & ~paste, valid_hw=valid_hw
    )
    return drop_small(out, cfg.min_mask_area)
