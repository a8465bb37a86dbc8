"""Zoom-in second pass: a small object is segmented again on a crop around it, enlarged to the network's size.

At the bundled 384-px working size a COCO "small" object (under 32x32 photo pixels) covers one or two stride-8 mask
cells, and its mask is as coarse as that. After the first answer, :func:`zoom_window` takes a square around the
answer's box (``expand`` times its longer side, at least ``min_side`` photo pixels, shifted to stay inside the
photo); when that crop would reach the network at least ``min_gain`` times larger than the photo did, the crop is
resized to the network's size and tapped again (RITM's and FocalClick's "zoom-in", here from the first click) at
the centre of the tap's stride-8 cell (so taps of one cell zoom alike). The second answer replaces the first
inside the crop (outside it the mask is empty) if it still covers the tap's cell and at least ``min_inside`` of its
pixels lie in the first answer's mask (a crop tapped near an object's edge otherwise answers with the neighbour);
otherwise the first answer stands. Windows snap to a 16-pixel grid, so taps
on one object mostly share a crop and its network state (:class:`ZoomConfig` ``cache``).

Coordinates: boxes and windows are ``(x0, y0, x1, y1)`` in photo pixels, ``x1`` / ``y1`` exclusive for windows.
Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["DEFAULT_ZOOM", "GRID", "ZoomConfig", "enlarge_crop", "share_inside", "zoom_window"]

GRID = 16  # zoom windows snap to this many photo pixels
DEFAULT_ZOOM = True  # tracenet.load()'s setting (the predictor classes, evaluation and benchmarks default to off)


@dataclass(frozen=True)
class ZoomConfig:
    """Settings of the zoom-in pass.

    ``expand``: crop side = ``expand`` x the first answer's longer box side. ``min_side``: the smallest crop
    side in photo pixels (caps the enlargement for tiny boxes). ``min_gain``: zoom only if the crop reaches the
    network at least this many times larger than the whole photo did (``max_side / crop side / photo scale``).
    ``cache``: zoomed crops whose network state is kept for further taps on the same photo. ``min_inside``: the
    share of the zoomed mask's pixels that must lie in the first answer's mask for it to replace the first answer
    (0 accepts every zoomed answer that covers the tap's cell).
    """

    expand: float = 1.25
    min_side: int = 48
    min_gain: float = 1.75
    cache: int = 4
    min_inside: float = 0.5

    def __post_init__(self) -> None:
        if not self.expand >= 1.0:
            raise ValueError(f"zoom expand must be >= 1, got {self.expand!r}")
        if not self.min_side >= 8:
            raise ValueError(f"zoom min_side must be >= 8 pixels, got {self.min_side!r}")
        if not self.min_gain > 1.0:
            raise ValueError(f"zoom min_gain must be > 1, got {self.min_gain!r}")
        if not self.cache >= 1:
            raise ValueError(f"zoom cache must be >= 1, got {self.cache!r}")
        if not 0.0 <= self.min_inside <= 1.0:
            raise ValueError(f"zoom min_inside must be in [0, 1], got {self.min_inside!r}")


def zoom_window(box: tuple[float, float, float, float], image_hw: tuple[int, int], max_side: int, scale: float,
                cfg: ZoomConfig) -> tuple[int, int, int, int] | None:
    """The crop ``(x0, y0, x1, y1)`` (photo pixels, end exclusive) to segment again for an answer with ``box``
    on a photo of ``image_hw = (H, W)`` that reached the network at ``scale`` (network px per photo px), or None
    when zooming would not enlarge it at least ``cfg.min_gain`` times.

    The crop is a square of side ``max(cfg.min_side, cfg.expand * longer box side)`` rounded up to a multiple of
    :data:`GRID` plus one more ``GRID``, its corner on the ``GRID`` nearest to centring it on the box (so it keeps
    at least the unrounded margin around the box), then shifted to lie inside the photo (cut to the photo's side
    where the photo is narrower)."""
    h, w = image_hw
    x0, y0, x1, y1 = box
    side = max(float(cfg.min_side), cfg.expand * max(x1 - x0, y1 - y0))
    side = (math.ceil(side / GRID) + 1) * GRID
    side_w, side_h = min(w, side), min(h, side)
    if max_side / max(side_w, side_h) / scale < cfg.min_gain:
        return None
    left = round(((x0 + x1) / 2 - side_w / 2) / GRID) * GRID
    top = round(((y0 + y1) / 2 - side_h / 2) / GRID) * GRID
    left, top = int(min(max(0, left), w - side_w)), int(min(max(0, top), h - side_h))
    return left, top, left + side_w, top + side_h


def enlarge_crop(image: np.ndarray, window: tuple[int, int, int, int], max_side: int) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` (``H x W x 3`` uint8) resized (bilinear) so its longer side is ``max_side``."""
    x0, y0, x1, y1 = window
    crop = image[y0:y1, x0:x1]
    f = max_side / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize(size, Image.Resampling.BILINEAR))




def share_inside(zoomed: np.ndarray, first: np.ndarray) -> float:
    """The share of the ``zoomed`` mask's pixels that lie in the ``first`` mask (both ``H x W`` bool, photo size);
    0 for an empty ``zoomed`` mask."""
    area = int(np.count_nonzero(zoomed))
    return int(np.count_nonzero(zoomed & first)) / area if area else 0.0
