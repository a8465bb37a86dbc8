"""The clickable region of a mask: where on the object a tap gives (nearly) the same mask (paper, fig. 1b).

The paper's tap-tolerance metric (mTA) measures the share of an instance where a tap yields a good mask; this
module computes the same region for one predicted mask so an editing app can show it. Taps with equal
``seg.tap_key((x, y))`` give identical predictions (for TraceNet: all taps in one stride-8 P3 cell), so the model
is run once per key group, not once per pixel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

__all__ = ["ClickableRegion", "clickable_region", "clickable_region_details", "mask_iou"]

FALLBACK_CELL = 8
"""Grouping cell size in pixels for segmenters without ``tap_key`` (TraceNet's P3 stride)."""


class _Segmenter(Protocol):
    def predict(self, tap: tuple[int, int]) -> Any: ...


@dataclass
class ClickableRegion:
    """Result of :func:`clickable_region_details`.

    Attributes:
        region: ``H x W`` bool, True where a tap reproduces the mask (IoU >= threshold).
        tolerance: ``region.sum() / mask.sum()``: the share of the object that is a safe place to tap.
        n_groups: distinct ``tap_key`` groups inside the mask.
        n_predictions: model calls made (``== n_groups`` when exact).
        exact: False when ``max_taps`` or ``time_budget_s`` stopped before every group was run and the rest
            was filled in from the nearest run tap.
    """

    region: np.ndarray
    tolerance: float
    n_groups: int
    n_predictions: int
    exact: bool


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``H x W`` bool masks (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _group_ids(seg: Any, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Group index per candidate pixel: equal ``seg.tap_key`` -> equal index (8 x 8 cells without it).

    A segmenter with ``tap_groups(xs, ys)`` (the vectorised form: an integer per tap, equal where the keys are) is
    asked once for all pixels instead of once per pixel (a large object has ~10^5 pixels)."""
    tap_groups = getattr(seg, "tap_groups", None)
    if callable(tap_groups):
        _, index = np.unique(np.asarray(tap_groups(xs, ys)), return_inverse=True)
        first = np.full(int(index.max()) + 1, xs.size, dtype=np.int64)
        np.minimum.at(first, index.reshape(-1), np.arange(xs.size))
        order = np.argsort(np.argsort(first))  # number groups by first appearance, as the key loop does
        return order[index.reshape(-1)].astype(np.int64)
    tap_key = getattr(seg, "tap_key", None)
    if not callable(tap_key):
        keys: Any = zip((xs // FALLBACK_CELL).tolist(), (ys // FALLBACK_CELL).tolist(), strict=True)
    else:
        keys = (tap_key((x, y)) for x, y in zip(xs.tolist(), ys.tolist(), strict=True))
    index: dict[Any, int] = {}
    return np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.int64, count=xs.size)


def _progressive_order(rep_x: np.ndarray, rep_y: np.ndarray) -> np.ndarray:
    """All representatives, ordered so that every prefix is spread evenly over the object.

    Level by level, a square lattice is halved; each lattice cell without an already chosen representative
    contributes the one nearest its centre. Stopping anywhere leaves an even, coarse-to-fine sample.
    """
    n = rep_x.size
    chosen = np.zeros(n, dtype=bool)
    order: list[np.ndarray] = []
    x, y = rep_x.astype(np.float64), rep_y.astype(np.float64)
    step = float(max(np.ptp(x), np.ptp(y), 1.0)) + 1.0
    while not chosen.all():
        cx, cy = np.floor(x / step), np.floor(y / step)
        _, cell = np.unique(np.stack([cx, cy], axis=1), axis=0, return_inverse=True)
        cell = cell.reshape(-1)
        occupied = np.zeros(int(cell.max()) + 1, dtype=bool)
        occupied[cell[chosen]] = True
        free = np.nonzero(~chosen & ~occupied[cell])[0]
        if free.size:
            dist = (x[free] - (cx[free] + 0.5) * step) ** 2 + (y[free] - (cy[free] + 0.5) * step) ** 2
            ranked = free[np.lexsort((dist, cell[free]))]
            _, first = np.unique(cell[ranked], return_index=True)
            new = ranked[first]
            order.append(new)
            chosen[new] = True
        step /= 2.0
    return np.concatenate(order) if order else np.zeros(0, dtype=np.int64)


def clickable_region_details(
    seg: Any,
    mask: np.ndarray,
    *,
    iou_threshold: float = 0.9,
    candidates: np.ndarray | None = None,
    max_taps: int | None = None,
    time_budget_s: float | None = None,
    started_at: float | None = None,
) -> ClickableRegion:
    """Find where on an object a tap gives (nearly) ``mask``.

    Args:
        seg: a segmenter whose image is already set (``seg.set_image(image)``): ``seg.predict((x, y))``
            returns an object with an ``H x W`` bool ``.mask``; ``seg.tap_key((x, y))`` (optional) returns a
            hashable such that equal keys give identical predictions.
        mask: ``H x W`` bool, the reference mask (usually the prediction for the user's tap).
        iou_threshold: a tap counts as clickable when its mask has IoU >= this with ``mask``.
        candidates: ``H x W`` bool, the pixels to test (default: ``mask`` itself, i.e. taps on the object).
        max_taps: at most this many model calls. When there are more groups, they are run coarse to fine
            (an even spread first) and every pixel not run takes the answer of the nearest run tap
            (``exact=False``).
        time_budget_s: likewise, make only the model calls that end within this many seconds, judging each next
            call by the mean duration of those made so far (at least one is made).
        started_at: the ``time.perf_counter()`` reading the budget counts from (default: when this is called);
            e.g. a server passes when the request came in, so the work before the model calls counts too.

    Returns:
        A :class:`ClickableRegion`; ``region`` is ``H x W`` bool and a subset of ``candidates``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {mask.shape}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    cand = mask if candidates is None else np.asarray(candidates, dtype=bool)
    if cand.shape != mask.shape:
        raise ValueError(f"candidates shape {cand.shape} does not match mask shape {mask.shape}")
    if max_taps is not None and max_taps < 1:
        raise ValueError(f"max_taps must be >= 1 or None, got {max_taps}")
    region = np.zeros_like(mask)
    ys, xs = np.nonzero(cand)
    if xs.size == 0:
        return ClickableRegion(region, 0.0, 0, 0, True)

    groups = _group_ids(seg, xs, ys)
    n_groups = int(groups.max()) + 1
    _, first = np.unique(groups, return_index=True)  # first pixel of each group, group ids 0..n-1 in order
    rep_x, rep_y = xs[first], ys[first]
    order = (
        np.arange(n_groups)
        if max_taps is None and time_budget_s is None
        else _progressive_order(rep_x, rep_y)
    )
    loop_start = time.perf_counter()
    start = loop_start if started_at is None else started_at
    good = np.zeros(n_groups, dtype=bool)
    done = 0
    for g in order.tolist():
        if max_taps is not None and done >= max_taps:
            break
        if time_budget_s is not None and done:
            # start a call only if, taking as long as the calls so far did on average, it ends within the budget
            now = time.perf_counter()
            if now - start + (now - loop_start) / done > time_budget_s:
                break
        pred = np.asarray(seg.predict((int(rep_x[g]), int(rep_y[g]))).mask, dtype=bool)
        good[g] = mask_iou(pred, mask) >= iou_threshold
        done += 1
    chosen = order[:done]

    if chosen.size == n_groups:
        region[ys, xs] = good[groups]
    else:
        # Nearest evaluated representative for every pixel (Voronoi labels of the seeds).
        seeds = np.ones(mask.shape, dtype=np.uint8)
        seeds[rep_y[chosen], rep_x[chosen]] = 0
        _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
        label_good = np.zeros(int(labels.max()) + 1, dtype=bool)
        label_good[labels[rep_y[chosen], rep_x[chosen]]] = good[chosen]
        region[ys, xs] = label_good[labels[ys, xs]]

    area = np.count_nonzero(mask)
    tolerance = float(np.count_nonzero(region & mask) / area) if area else 0.0
    return ClickableRegion(region, tolerance, n_groups, int(chosen.size), chosen.size == n_groups)


def clickable_region(
    seg: Any,
    mask: np.ndarray,
    *,
    iou_threshold: float = 0.9,
    candidates: np.ndarray | None = None,
    max_taps: int | None = None,
    time_budget_s: float | None = None,
    started_at: float | None = None,
) -> np.ndarray:
    """``H x W`` bool: the part of the object where a tap gives a mask with IoU >= ``iou_threshold``.

    Same arguments as :func:`clickable_region_details`, which also reports the tap tolerance and model calls.
    """
    return clickable_region_details(
        seg,
        mask,
        iou_threshold=iou_threshold,
        candidates=candidates,
        max_taps=max_taps,
        time_budget_s=time_budget_s,
        started_at=started_at,
    ).region
