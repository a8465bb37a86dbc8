"""Boundary refinement: snap a tap's mask to the photo's edges after the dynamic mask head.

The mask head predicts at stride 8 of a network input of 384 px (the bundled model), so on a 1024x768 photo its
boundary is a smooth curve drawn on a ~21-pixel grid. Two classical refiners work on a crop around the mask
(its box plus a margin) at the photo's resolution and only ever change pixels in that crop:

- ``"guided"``: the guided filter (He, Sun and Tang 2013) of the mask probabilities with the photo's colours as
  the guide (per-pixel 3x3 colour covariance, ``cv2.boxFilter`` sums), then the threshold 0.5. Edges in the
  photo pull the 0.5 contour onto them; about 10-20 ms per tap.
- ``"grabcut"``: OpenCV GrabCut initialised from the mask: confident pixels (probability >= 0.9 / <= 0.1) are
  fixed foreground / background (the crop's border too), the rest is "probably" by the 0.5 threshold, and
  ``iterations`` rounds of colour-model EM + graph cut decide them, on the crop shrunk to at most ``max_side``
  pixels (then upsampled back). The labels are made at the photo's resolution and shrunk as labels, so the
  refined mask depends on the probabilities only through those three thresholds there. A small mask (under
  ``small_share`` of the photo, 0.75%) gets a tighter trimap (>= 0.7 / <= 0.3): GrabCut's colour models, fitted
  on a small object in a cluttered crop, otherwise pull in its surroundings (session 10, chosen on coco-mini val
  first clicks: 0.303 -> 0.325; README "Boundary refinement"). If GrabCut empties the
  mask, the unrefined mask is kept. OpenCV's random generator is seeded before each call, so a tap gives the
  same mask every time.

``refine="none"`` returns the thresholded probabilities unchanged. The refiner sees only the photo and the
probabilities of the chosen candidate, so the traced path and FullNet (which give identical probabilities) give
identical refined masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["DEFAULT_REFINE", "REFINERS", "RefineConfig", "refine_mask"]

REFINERS = ("none", "guided", "grabcut")
DEFAULT_REFINE = "grabcut"
"""What ``tracenet.load()``, ``tracenet segment``, ``tracenet edit`` and the web app refine with unless told
otherwise (measured in session 9, README "Boundary refinement"). The :class:`~tracenet.predictor.TapSegmenter`
constructor itself, evaluation and the benchmarks keep ``"none"``: they measure the network's own masks."""
GRABCUT_SEED = 0  # OpenCV's generator state before every GrabCut call (k-means seeding of its colour models)


@dataclass(frozen=True)
class RefineConfig:
    """``margin``: crop = mask box grown by this share of its size on each side (at least ``min_margin`` px).
    Guided filter: ``radius`` in units of the mask head's cell (``cell`` photo pixels, see :func:`refine_mask`;
    the coarse boundary is uncertain by about one cell) and ``eps`` (the edge-preserving strength, in [0, 1]
    colour units squared). GrabCut: ``iterations``; ``trimap``: ``(object, background)`` probability thresholds
    of its fixed labels, ``small_trimap`` instead for masks under ``small_share`` of the photo's pixels and
    ``large_trimap`` for masks of at least ``large_share`` of them (default: none). Both work on the crop shrunk
    to at most ``max_side`` pixels (the guided filter applies its coefficients at full resolution).
    Clean-up of the refined crop (both refiners): ``components`` ``"all"`` keeps every connected piece,
    ``"overlap"`` only those that share a pixel with the unrefined mask, ``"largest"`` only the largest of
    those; ``fill_holes`` fills background holes (pieces not touching the crop's border) smaller than this share
    of the mask's area (0: none)."""

    margin: float = 0.15
    min_margin: int = 16
    radius: float = 1.0
    eps: float = 1e-3
    iterations: int = 2
    max_side: int = 256
    trimap: tuple[float, float] = (0.9, 0.1)
    small_trimap: tuple[float, float] = (0.7, 0.3)
    small_share: float = 0.0075
    large_trimap: tuple[float, float] = (0.97, 0.03)
    large_share: float = float("inf")
    components: str = "all"
    fill_holes: float = 0.0

    def __post_init__(self) -> None:
        if self.components not in ("all", "overlap", "largest"):
            raise ValueError(f"components must be 'all', 'overlap' or 'largest', got {self.components!r}")


def _crop(mask: np.ndarray, cfg: RefineConfig) -> tuple[slice, slice] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    h, w = mask.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    my = max(cfg.min_margin, int(cfg.margin * (y1 - y0)))
    mx = max(cfg.min_margin, int(cfg.margin * (x1 - x0)))
    return slice(max(0, y0 - my), min(h, y1 + my)), slice(max(0, x0 - mx), min(w, x1 + mx))


def _guided(image: np.ndarray, probs: np.ndarray, radius: int, eps: float, max_side: int) -> np.ndarray:
    """Colour guided filter of ``probs [h, w]`` float32 with guide ``image [h, w, 3]`` uint8 -> ``[h, w]``.

    Crops larger than ``max_side`` use the fast guided filter (He and Sun 2015): the linear coefficients are
    fitted on the crop shrunk to ``max_side``, upsampled, and applied to the full-resolution guide."""
    h, w = probs.shape
    full_guide = image.astype(np.float32) / 255.0
    s = min(1.0, max_side / max(h, w))
    guide, p = full_guide, probs
    if s < 1.0:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        guide = cv2.resize(full_guide, size, interpolation=cv2.INTER_AREA)
        p = cv2.resize(probs, size, interpolation=cv2.INTER_AREA)
        radius = max(1, round(radius * s))
    ksize = (2 * radius + 1, 2 * radius + 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, -1, ksize, borderType=cv2.BORDER_REFLECT)

    mean_i = box(guide)  # [h, w, 3]
    mean_p = box(p)
    cov_ip = box(guide * p[..., None]) - mean_i * mean_p[..., None]
    var = np.empty((*p.shape, 3, 3), dtype=np.float32)  # per-pixel 3x3 colour covariance, regularised
    for i in range(3):
        for j in range(i, 3):
            var[..., i, j] = var[..., j, i] = box(guide[..., i] * guide[..., j]) - mean_i[..., i] * mean_i[..., j]
    var += eps * np.eye(3, dtype=np.float32)
    a = np.linalg.solve(var, cov_ip[..., None])[..., 0]  # [h, w, 3]
    b = mean_p - (a * mean_i).sum(-1)
    mean_a, mean_b = box(a), box(b)
    if s < 1.0:
        mean_a = cv2.resize(mean_a, (w, h), interpolation=cv2.INTER_LINEAR)
        mean_b = cv2.resize(mean_b, (w, h), interpolation=cv2.INTER_LINEAR)
    return (mean_a * full_guide).sum(-1) + mean_b


def _trimap(probs: np.ndarray, sure: tuple[float, float] = (0.9, 0.1)) -> np.ndarray:
    """GrabCut's initial labels from mask probabilities ``[h, w]``: >= ``sure[0]`` object, <= ``sure[1]``
    background, the rest "probably" by the 0.5 threshold."""
    gc = np.where(probs > 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    gc[probs >= sure[0]] = cv2.GC_FGD
    gc[probs <= sure[1]] = cv2.GC_BGD
    return gc


def _grabcut(image: np.ndarray, probs: np.ndarray, cfg: RefineConfig, sure: tuple[float, float]) -> np.ndarray:
    h, w = probs.shape
    # The labels are taken at the photo's resolution and shrunk as labels (nearest), never the probabilities:
    # the traced path and FullNet give probabilities equal up to float32 summation order (~4e-7), and one
    # shrunk probability on the other side of 0.5 changed ~100 refined pixels of a coffee.png tap.
    gc = _trimap(probs, sure)
    s = min(1.0, cfg.max_side / max(h, w))
    if s < 1.0:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        gc = cv2.resize(gc, size, interpolation=cv2.INTER_NEAREST)
    border = np.ones(gc.shape, dtype=bool)
    border[1:-1, 1:-1] = False
    gc[border & (gc != cv2.GC_FGD)] = cv2.GC_BGD
    if not ((gc == cv2.GC_PR_FGD) | (gc == cv2.GC_PR_BGD)).any():
        return None  # nothing left to decide
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour models by k-means from OpenCV's (per-thread) global generator: without a fixed
    # seed the same tap gives a different mask on every call. This resets that generator for the calling thread.
    cv2.setRNGSeed(GRABCUT_SEED)
    try:
        cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), gc, None, bgd, fgd, cfg.iterations,
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour models (e.g. a flat crop): keep the mask as it is
        return None
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.float32)
    if s < 1.0:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
    return fg > 0.5


def _clean(refined: np.ndarray, mask: np.ndarray, cfg: RefineConfig) -> np.ndarray:
    """``refined``, ``mask``: ``[h, w]`` bool crops (refined, unrefined) -> the refined crop after the clean-up
    that ``cfg.components`` and ``cfg.fill_holes`` ask for (8-connected pieces, 4-connected holes)."""
    if cfg.components != "all":
        _, labels, stats, _ = cv2.connectedComponentsWithStats(refined.astype(np.uint8), connectivity=8)
        touched = np.unique(labels[mask & refined])  # label 0 (background) never: refined is False there
        if cfg.components == "largest" and touched.size:
            touched = touched[[np.argmax(stats[touched, cv2.CC_STAT_AREA])]]
        refined = np.isin(labels, touched)  # none touched: empty, left to the caller's empty check
    if cfg.fill_holes > 0 and refined.any():
        _, labels, stats, _ = cv2.connectedComponentsWithStats((~refined).astype(np.uint8), connectivity=4)
        h, w = refined.shape
        x, y, bw, bh, area = (stats[1:, k] for k in range(5))
        inside = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h) & (area < cfg.fill_holes * refined.sum())
        refined = refined | np.isin(labels, 1 + np.flatnonzero(inside))
    return refined


def refine_mask(image: np.ndarray, probs: np.ndarray, method: str = "guided",
                cfg: RefineConfig | None = None, cell: float = 8.0) -> np.ndarray:
    """Refine one mask.

    Args:
        image: the photo, ``[H, W, 3]`` uint8 RGB.
        probs: the candidate's mask probabilities at the photo's size, ``[H, W]`` float32 in [0, 1].
        method: one of :data:`REFINERS`.
        cfg: settings (:class:`RefineConfig`).
        cell: the mask head's cell (stride 8 on the network input) in photo pixels: ``8 / scale`` when the
            photo was resized by ``scale`` for the network.

    Returns:
        ``[H, W]`` bool mask; equal to ``probs > 0.5`` outside the crop around that mask.
    """
    if method not in REFINERS:
        raise ValueError(f"refine must be one of {REFINERS}, got {method!r}")
    cfg = cfg or RefineConfig()
    mask = probs > 0.5
    if method == "none":
        return mask
    crop = _crop(mask, cfg)
    if crop is None:
        return mask
    img, p = image[crop], np.ascontiguousarray(probs[crop], dtype=np.float32)
    if method == "guided":
        radius = max(2, round(cfg.radius * cell))
        refined = _guided(img, p, radius, cfg.eps, cfg.max_side) > 0.5
    else:
        share = mask.sum() / mask.size
        sure = (cfg.small_trimap if share < cfg.small_share
                else cfg.large_trimap if share >= cfg.large_share else cfg.trimap)
        refined = _grabcut(img, p, cfg, sure)
    if refined is not None:
        refined = _clean(refined, mask[crop], cfg)
    if refined is None or not refined.any():
        return mask
    out = mask.copy()
    out[crop] = refined
    return out
