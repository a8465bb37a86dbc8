"""Evaluate one instance: its taps -> masks -> (intersection, union), with grouped (exact, fast) mTA.

All queries of an instance (25 band taps, the first click, the mTA pixels) go through one cache keyed by the
method's ``group_key((x, y))`` when it has one (equal keys promise identical masks, so one prediction per key
is exact), else by the tap ``(x, y)`` itself (brute force). mTA pixels are every mask pixel (``stride == 1``,
exact) or the mask pixels on the image-anchored grid ``x % S == S // 2 and y % S == S // 2`` (``stride == S``,
approximate: each sampled pixel stands for an ``S x S`` cell, instances smaller than a cell may have none).
The grid is the same for every method, so approximate runs of different methods tap the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracenet.eval.methods import group_key_of, predict_taps
from tracenet.eval.taps import N_BANDS, Tap, TapSet

__all__ = ["InstanceResult", "check_group_key", "evaluate_instance", "iou_counts", "mta_pixels"]


@dataclass
class InstanceResult:
    """Per-instance numbers; everything the aggregate metrics need.

    ``taps``: ``(band, x, y, intersection, union)`` per band tap. ``mta_good[k - 1]`` / ``mta_count[k - 1]``:
    evaluated pixels of band ``k`` whose tap gives IoU >= beta / all evaluated pixels of band ``k``.
    ``good_map`` (only when asked): ``h x w`` int8 over the bbox at ``origin`` ``(x0, y0)``; -1 = not
    evaluated (outside the mask, or off the stride grid), 0 = IoU < beta, 1 = IoU >= beta.
    ``file``: the image file (relative to the benchmark's image folder); ``ignore_pixels``: pixels left out of
    every IoU of this instance (GrabCut's unknown band; 0 for COCO).
    """

    ann_id: int
    image_id: int
    category: str
    size: str
    area: float
    mask_area: int
    taps: list[tuple[int, int, int, int, int]]
    empty_bands: tuple[int, ...]
    first_click: Tap
    first_click_iou: float
    mta_good: np.ndarray
    mta_count: np.ndarray
    n_predictions: int
    good_map: np.ndarray | None = field(default=None, repr=False)
    origin: Tap = (0, 0)
    file: str = ""
    ignore_pixels: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable record (one line of ``instances.jsonl``); :meth:`from_json` reads it back."""
        inter = sum(t[3] for t in self.taps)
        union = sum(t[4] for t in self.taps)
        count = int(self.mta_count.sum())
        return {
            "ann_id": self.ann_id,
            "image_id": self.image_id,
            "file": self.file,
            "category": self.category,
            "size": self.size,
            "area": self.area,
            "mask_area": self.mask_area,
            "miou_t": inter / union if union else None,
            "mta": int(self.mta_good.sum()) / count if count else None,
            "mta_pixels": count,
            "mta_good": [int(v) for v in self.mta_good],
            "mta_count": [int(v) for v in self.mta_count],
            "ignore_pixels": self.ignore_pixels,
            "first_click": list(self.first_click),
            "first_click_iou": self.first_click_iou,
            "empty_bands": list(self.empty_bands),
            "n_predictions": self.n_predictions,
            "taps": [list(t) for t in self.taps],
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> InstanceResult:
        """The result a :meth:`to_json` row came from (without ``good_map`` / ``origin``, which are not saved)."""
        return cls(
            ann_id=int(row["ann_id"]),
            image_id=int(row["image_id"]),
            category=str(row["category"]),
            size=str(row["size"]),
            area=float(row["area"]),
            mask_area=int(row["mask_area"]),
            taps=[tuple(int(v) for v in t) for t in row["taps"]],
            empty_bands=tuple(int(b) for b in row["empty_bands"]),
            first_click=(int(row["first_click"][0]), int(row["first_click"][1])),
            first_click_iou=float(row["first_click_iou"]),
            mta_good=np.array(row["mta_good"], np.int64),
            mta_count=np.array(row["mta_count"], np.int64),
            n_predictions=int(row["n_predictions"]),
            file=str(row.get("file", "")),
            ignore_pixels=int(row.get("ignore_pixels", 0)),
        )


def iou_counts(
    pred: np.ndarray, gt: np.ndarray, gt_area: int | None = None, *, ignore: np.ndarray | None = None
) -> tuple[int, int]:
    """``(|pred & gt|, |pred | gt|)`` in pixels for ``H x W`` bool masks, leaving out the ``ignore`` pixels
    (``H x W`` bool or None; they must not overlap ``gt``): a prediction there costs nothing."""
    if ignore is not None:
        pred = pred & ~ignore
    inter = int(np.count_nonzero(pred & gt))
    area = int(np.count_nonzero(gt)) if gt_area is None else gt_area
    return inter, int(np.count_nonzero(pred)) + area - inter


def mta_pixels(tapset: TapSet, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixels mTA taps: ``(xy, band)`` with ``xy`` ``N x 2`` ``(x, y)`` image pixels and ``band`` ``N``.

    ``stride == 1``: every mask pixel; ``stride == S``: mask pixels with ``x % S == y % S == S // 2``.
    """
    if stride < 1:
        raise ValueError(f"mTA stride must be >= 1, got {stride}")
    bmap = tapset.bands.band_map
    rows, cols = np.nonzero(bmap)
    x0, y0 = tapset.bands.origin
    xs, ys = cols + x0, rows + y0
    if stride > 1:
        keep = (xs % stride == stride // 2) & (ys % stride == stride // 2)
        rows, xs, ys, cols = rows[keep], xs[keep], ys[keep], cols[keep]
    return np.stack([xs, ys], axis=1).astype(np.int64), bmap[rows, cols].astype(np.int64)


def evaluate_instance(
    method: Any,
    gt: np.ndarray,
    tapset: TapSet,
    *,
    beta: float = 0.7,
    mta_stride: int | None = 1,
    keep_good_map: bool = False,
    meta: dict[str, Any] | None = None,
    ignore: np.ndarray | None = None,
) -> InstanceResult:
    """Tap one instance with ``method`` (``set_image`` already called on its image).

    ``gt``: ``H x W`` bool ground truth. ``mta_stride``: 1 = exact mTA, ``S`` > 1 = grid sample, None = skip
    mTA. ``meta``: ``ann_id``, ``image_id``, ``file``, ``category``, ``size``, ``area`` copied into the
    result. ``ignore``: ``H x W`` bool pixels left out of every IoU (disjoint from ``gt``), or None.
    """
    gt = np.asarray(gt, bool)
    gt_area = int(np.count_nonzero(gt))
    if ignore is not None:
        ignore = np.asarray(ignore, bool)
        if ignore.shape != gt.shape or (ignore & gt).any():
            raise ValueError(
                f"ignore mask {ignore.shape} must have the ground truth's shape {gt.shape} and "
                "no pixel in common with it"
            )
    key_fn: Callable[[Tap], Hashable] = group_key_of(method) or (lambda xy: xy)
    queries: dict[Hashable, Tap] = {}

    def key_of(xy: Tap) -> Hashable:
        key = key_fn(xy)
        queries.setdefault(key, xy)
        return key

    band_keys = [(band, xy, key_of(xy)) for band, xy in tapset.band_taps.flat()]
    fc_key = key_of(tapset.first_click)
    if mta_stride is not None:
        pix, pix_band = mta_pixels(tapset, mta_stride)
        pix_keys = [key_of((x, y)) for x, y in pix.tolist()]
    else:
        pix, pix_band, pix_keys = np.zeros((0, 2), np.int64), np.zeros(0, np.int64), []

    keys = list(queries)
    iu: dict[Hashable, tuple[int, int]] = {}
    masks = predict_taps(method, [queries[k] for k in keys], gt.shape)
    for key, mask in zip(keys, masks, strict=True):
        iu[key] = iou_counts(mask, gt, gt_area, ignore=ignore)

    def iou(key: Hashable) -> float:
        inter, union = iu[key]
        return inter / union if union else 0.0

    good_key = {k: iou(k) >= beta for k in keys}
    good = np.array([good_key[k] for k in pix_keys], bool)
    mta_good = np.bincount(pix_band[good], minlength=N_BANDS + 1)[1:]
    mta_count = np.bincount(pix_band, minlength=N_BANDS + 1)[1:]

    good_map = None
    if keep_good_map:
        good_map = np.full(tapset.bands.band_map.shape, -1, np.int8)
        x0, y0 = tapset.bands.origin
        good_map[pix[:, 1] - y0, pix[:, 0] - x0] = good.astype(np.int8)

    meta = meta or {}
    return InstanceResult(
        ann_id=int(meta.get("ann_id", -1)),
        image_id=int(meta.get("image_id", -1)),
        file=str(meta.get("file", "")),
        category=str(meta.get("category", "")),
        size=str(meta.get("size", "")),
        area=float(meta.get("area", gt_area)),
        mask_area=gt_area,
        taps=[(band, xy[0], xy[1], *iu[key]) for band, xy, key in band_keys],
        empty_bands=tapset.band_taps.empty_bands,
        first_click=tapset.first_click,
        first_click_iou=iou(fc_key),
        mta_good=mta_good.astype(np.int64),
        mta_count=mta_count.astype(np.int64),
        n_predictions=len(keys),
        good_map=good_map,
        origin=tapset.bands.origin,
        ignore_pixels=0 if ignore is None else int(np.count_nonzero(ignore)),
    )


_WINDOW = 7


def check_group_key(
    method: Any, tapset: TapSet, image_shape: tuple[int, int], rng: np.random.Generator, n: int = 2
) -> tuple[int, int]:
    """Spot-check the method's ``group_key`` promise on ``n`` random pixels of the instance
    (``image_shape``: ``(H, W)`` of the current image).

    For each picked pixel ``(x, y)``, a random other pixel within 7 px (and the bbox) with the same key is
    drawn, both are predicted directly and their masks compared. Returns ``(pairs checked, pairs with different
    masks)``; ``(0, 0)`` for methods without a key. A mismatch means grouped mTA is not exact for the method.
    """
    key_fn = group_key_of(method)
    if key_fn is None or n <= 0:
        return 0, 0
    pix, _ = mta_pixels(tapset, 1)
    shape = tapset.bands.band_map.shape
    x0, y0 = tapset.bands.origin
    checked = mismatched = 0
    for i in rng.choice(len(pix), size=min(n, len(pix)), replace=False):
        x, y = (int(v) for v in pix[i])
        key = key_fn((x, y))
        mates = [
            (x + dx, y + dy)
            for dy in range(-_WINDOW, _WINDOW + 1)
            for dx in range(-_WINDOW, _WINDOW + 1)
            if (dx or dy)
            and 0 <= x + dx - x0 < shape[1]
            and 0 <= y + dy - y0 < shape[0]
            and key_fn((x + dx, y + dy)) == key
        ]
        if mates:
            mate = mates[int(rng.integers(len(mates)))]
            a, b = predict_taps(method, [(x, y), mate], image_shape)
            checked += 1
            mismatched += int(not np.array_equal(a, b))
    return checked, mismatched
