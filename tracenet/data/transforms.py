"""Training augmentations on numpy samples: shortest-edge resize (the paper's), horizontal flip, large-scale
jitter (LSJ). Copy-paste lives in :mod:`tracenet.data.copy_paste`.

Every transform takes a :class:`Sample` and a ``numpy.random.Generator`` and returns a new :class:`Sample`; all
randomness comes from that generator, so a sample is a pure function of (record, seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from tracenet.data.masks import resize_masks

__all__ = [
    "AUGMENT_PRESETS",
    "AugmentConfig",
    "Sample",
    "augment",
    "drop_small",
    "hflip",
    "large_scale_jitter",
    "resize_shortest_edge",
]

# ImageNet mean colour (RGB, 0-255): padding with it normalises to ~0.
PAD_VALUE = (124, 116, 104)


@dataclass
class Sample:
    """One training image and its instances (numpy, before collation).

    image: ``[H, W, 3]`` uint8 RGB. masks: ``[N, H, W]`` bool. classes: ``[N]`` int64 contiguous class ids.
    ignore: ``[H, W]`` bool, crowd regions (never targets, excluded from the losses).
    valid_hw: ``(h, w)`` of the real image content at the top-left of ``image``; the rest is padding.
    exhaustive: False when only some objects of the photo are annotated (no background may be learnt from it).
    """

    image: np.ndarray
    masks: np.ndarray
    classes: np.ndarray
    ignore: np.ndarray
    valid_hw: tuple[int, int]
    image_id: int = -1
    exhaustive: bool = True


@dataclass
class AugmentConfig:
    """Which augmentations run, in this order: resize (``resize`` = "shortest_edge", "lsj" or "none"),
    horizontal flip, copy-paste (needs another image, done by the dataset)."""

    resize: str = "shortest_edge"
    min_size: tuple[int, int] = (640, 800)  # shortest-edge: shorter side uniform in this closed range
    max_size: int = 1333  # shortest-edge: longer side cap
    lsj_size: int = 1024  # LSJ: output is lsj_size x lsj_size
    lsj_scale: tuple[float, float] = (0.1, 2.0)
    hflip_prob: float = 0.5
    copy_paste_prob: float = 0.0  # probability that an image gets instances pasted from another one
    copy_paste_max_fraction: tuple[float, float] = field(
        default=(0.0, 1.0)
    )  # share of source instances pasted
    min_mask_area: int = 4  # instances with fewer pixels (after augmentation / occlusion) are dropped

    def __post_init__(self) -> None:
        if self.resize not in ("shortest_edge", "lsj", "none"):
            raise ValueError(
                f"AugmentConfig.resize must be 'shortest_edge', 'lsj' or 'none', got {self.resize!r}"
            )


AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    # TraceNet / CondInst: shorter side in [640, 800], longer <= 1333, flip.
    "paper": AugmentConfig(),
    # Ghiasi et al. simple copy-paste recipe: LSJ 0.1-2.0 at 1024 + copy-paste.
    "lsj_copy_paste": AugmentConfig(resize="lsj", copy_paste_prob=1.0),
    "none": AugmentConfig(resize="none", hflip_prob=0.0),
}


def _resize_image(image: np.ndarray, h: int, w: int) -> np.ndarray:
    down = h * w < image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)


def _scale(sample: Sample, h: int, w: int) -> Sample:
    return replace(
        sample,
        image=_resize_image(sample.image, h, w),
        masks=resize_masks(sample.masks, (h, w)),
        ignore=resize_masks(sample.ignore, (h, w)),
        valid_hw=(h, w),
    )


def resize_shortest_edge(sample: Sample, rng: np.random.Generator, cfg: AugmentConfig) -> Sample:
    """Keep the aspect ratio: shorter side ~ U{min_size}, then shrink so the longer side is <= max_size."""
    h, w = sample.valid_hw
    short = int(rng.integers(cfg.min_size[0], cfg.min_size[1] + 1))
    scale = short / min(h, w)
    if max(h, w) * scale > cfg.max_size:
        scale = cfg.max_size / max(h, w)
    nh, nw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
    return _scale(sample, nh, nw)


def large_scale_jitter(sample: Sample, rng: np.random.Generator, cfg: AugmentConfig) -> Sample:
    """LSJ (Ghiasi et al.): resize so the image fits ``lsj_size`` times a factor ~ U(lsj_scale), then a random
    ``lsj_size`` crop if larger, padded bottom/right (mean colour) to exactly ``lsj_size x lsj_size``."""
    s = cfg.lsj_size
    h, w = sample.valid_hw
    factor = float(rng.uniform(*cfg.lsj_scale))
    scale = factor * min(s / h, s / w)
    nh, nw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
    scaled = _scale(sample, nh, nw)
    y0 = int(rng.integers(0, nh - s + 1)) if nh > s else 0
    x0 = int(rng.integers(0, nw - s + 1)) if nw > s else 0
    ch, cw = min(s, nh), min(s, nw)
    image = np.empty((s, s, 3), dtype=np.uint8)
    image[:] = np.array(PAD_VALUE, dtype=np.uint8)
    image[:ch, :cw] = scaled.image[y0 : y0 + ch, x0 : x0 + cw]
    masks = np.zeros((sample.masks.shape[0], s, s), dtype=bool)
    masks[:, :ch, :cw] = scaled.masks[:, y0 : y0 + ch, x0 : x0 + cw]
    ignore = np.zeros((s, s), dtype=bool)
    ignore[:ch, :cw] = scaled.ignore[y0 : y0 + ch, x0 : x0 + cw]
    return replace(sample, image=image, masks=masks, ignore=ignore, valid_hw=(ch, cw))


def hflip(sample: Sample) -> Sample:
    """Mirror the valid region left-right (padding stays at the right)."""
    h, w = sample.valid_hw
    image, masks, ignore = sample.image.copy(), sample.masks.copy(), sample.ignore.copy()
    image[:h, :w] = sample.image[:h, :w][:, ::-1]
    masks[:, :h, :w] = sample.masks[:, :h, :w][:, :, ::-1]
    ignore[:h, :w] = sample.ignore[:h, :w][:, ::-1]
    return replace(sample, image=image, masks=masks, ignore=ignore)


def drop_small(sample: Sample, min_area: int) -> Sample:
    """Remove instances whose mask has fewer than ``min_area`` pixels (vanished in a resize, crop or paste)."""
    if sample.masks.shape[0] == 0:
        return sample
    keep = sample.masks.reshape(sample.masks.shape[0], -1).sum(axis=1) >= max(1, min_area)
    if keep.all():
        return sample
    return replace(sample, masks=sample.masks[keep], classes=sample.classes[keep])


def augment(sample: Sample, rng: np.random.Generator, cfg: AugmentConfig) -> Sample:
    """Resize (per ``cfg.resize``) then flip with ``cfg.hflip_prob``. Copy-paste is applied by the dataset."""
    if cfg.resize == "shortest_edge":
        sample = resize_shortest_edge(sample, rng, cfg)
    elif cfg.resize == "lsj":
        sample = large_scale_jitter(sample, rng, cfg)
    if cfg.hflip_prob > 0 and rng.random() < cfg.hflip_prob:
        sample = hflip(sample)
    return sample
