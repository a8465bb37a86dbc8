"""The paper's metrics (sec. 4.2) and their breakdowns, pooled from per-instance results.

- mIoU-T (eq. 6): ``sum_ij |pred_ij & gt_i| / sum_ij |pred_ij | gt_i|`` over all (instance i, band tap j) pairs:
  a pooled ratio, not a mean of per-tap IoUs, so large instances weigh more.
- mTA (eq. 7): every pixel of every instance is a tap; ``#(pixels whose tap gives IoU >= beta) / sum_i |gt_i|``.
  With a stride ``S > 1`` only grid pixels are tapped and both counts are over those pixels (approximate).
- per band ``k``: mIoU-T over band-``k`` taps, mTA over band-``k`` pixels, number of taps, number of instances
  whose band ``k`` was empty.
- per category / per size (COCO areas by the annotation's ``area``: small < 32^2 <= medium < 96^2 <= large):
  the same pooled mIoU-T and mTA over the instances of the group, and their count ``n``.
- first-click IoU: the mean over instances of the IoU at the first click (as RITM reports IoU@1 click: the
  mIoU@1 of GrabCut / Berkeley / DAVIS tables), and ``first_click_share``: the share of instances whose
  first-click IoU is >= 0.85 and >= 0.90 (the thresholds of NoC@85 / NoC@90; keys ``"0.85"``, ``"0.90"``).

Undefined values (no taps / no pixels) are ``None`` so the JSON stays valid.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tracenet.eval.instance import InstanceResult
from tracenet.eval.taps import N_BANDS

__all__ = ["FIRST_CLICK_THRESHOLDS", "SIZE_NAMES", "aggregate", "miou_t", "mta", "size_of"]

SIZE_NAMES = ("small", "medium", "large")
FIRST_CLICK_THRESHOLDS = (0.85, 0.90)


def miou_t(intersections: Iterable[float], unions: Iterable[float]) -> float | None:
    """Eq. 6: ``sum(intersections) / sum(unions)`` (pixel counts per (instance, tap) pair); None if empty."""
    union = float(np.sum(np.asarray(list(unions), dtype=np.float64)))
    inter = float(np.sum(np.asarray(list(intersections), dtype=np.float64)))
    return inter / union if union > 0 else None


def mta(good_counts: Iterable[int], areas: Iterable[int]) -> float | None:
    """Eq. 7: ``sum(good_counts) / sum(areas)``; per instance, good = tapped pixels with IoU >= beta and
    area = tapped pixels (all of ``|gt_i|`` when exact). None if there are no pixels."""
    area = int(np.sum(np.asarray(list(areas), dtype=np.int64)))
    good = int(np.sum(np.asarray(list(good_counts), dtype=np.int64)))
    return good / area if area > 0 else None


def size_of(area: float) -> str:
    """COCO object size of an annotation ``area`` in pixels: small < 32^2 <= medium < 96^2 <= large."""
    if area < 32**2:
        return "small"
    if area < 96**2:
        return "medium"
    return "large"


def _pooled(results: Sequence[InstanceResult]) -> dict[str, Any]:
    taps = [t for r in results for t in r.taps]
    return {
        "miou_t": miou_t((t[3] for t in taps), (t[4] for t in taps)),
        "mta": mta((int(r.mta_good.sum()) for r in results), (int(r.mta_count.sum()) for r in results)),
        "n": len(results),
    }


def _per_band(results: Sequence[InstanceResult]) -> list[dict[str, Any]]:
    out = []
    for band in range(1, N_BANDS + 1):
        taps = [t for r in results for t in r.taps if t[0] == band]
        out.append(
            {
                "band": band,
                "miou_t": miou_t((t[3] for t in taps), (t[4] for t in taps)),
                "mta": mta(
                    (int(r.mta_good[band - 1]) for r in results),
                    (int(r.mta_count[band - 1]) for r in results),
                ),
                "n_taps": len(taps),
                "empty_bands": sum(band in r.empty_bands for r in results),
            }
        )
    return out


def aggregate(results: Sequence[InstanceResult]) -> dict[str, Any]:
    """The metric part of ``metrics.json`` from per-instance results (module docstring for definitions).

    Keys: ``miou_t``, ``mta``, ``per_band`` (5 dicts), ``per_category`` (name -> miou_t, mta, n),
    ``per_size`` (small/medium/large -> miou_t, mta, n), ``first_click_iou``, ``first_click_share``
    (``"0.85"`` / ``"0.90"`` -> share of instances at or above), ``n_instances``, ``n_taps``,
    ``empty_bands`` (total), ``mta_pixels`` (evaluated), ``mask_pixels`` (all), ``n_predictions``.
    """
    by_cat: dict[str, list[InstanceResult]] = defaultdict(list)
    by_size: dict[str, list[InstanceResult]] = {s: [] for s in SIZE_NAMES}
    for r in results:
        by_cat[r.category].append(r)
        by_size.setdefault(r.size, []).append(r)
    pooled = _pooled(results)
    fc = [r.first_click_iou for r in results]
    return {
        "miou_t": pooled["miou_t"],
        "mta": pooled["mta"],
        "first_click_iou": float(np.mean(fc)) if fc else None,
        "first_click_share": {
            f"{t:.2f}": (sum(v >= t for v in fc) / len(fc) if fc else None) for t in FIRST_CLICK_THRESHOLDS
        },
        "per_band": _per_band(results),
        "per_category": {c: _pooled(rs) for c, rs in sorted(by_cat.items())},
        "per_size": {s: _pooled(rs) for s, rs in by_size.items()},
        "n_instances": len(results),
        "n_taps": sum(len(r.taps) for r in results),
        "empty_bands": sum(len(r.empty_bands) for r in results),
        "mta_pixels": int(sum(int(r.mta_count.sum()) for r in results)),
        "mask_pixels": int(sum(r.mask_area for r in results)),
        "n_predictions": int(sum(r.n_predictions for r in results)),
    }
