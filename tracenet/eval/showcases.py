"""What the qualitative and clickable-region plots show of a run, and how shards keep it for the merge.

A :class:`Showcase` is one instance cropped with its ground truth, a few predictions and its clickable-region
map. A sharded run saves its showcases in ``showcases.npz`` (:func:`save_showcases`); the merge reads them back
(:func:`load_showcases`) and keeps the first ``n_showcase`` by ``order``, which are exactly the ones a single
run would have drawn (each shard keeps its own first ``n_showcase``, a superset of the global first ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tracenet.eval.instance import InstanceResult, iou_counts
from tracenet.eval.taps import Tap, TapSet

__all__ = ["Showcase", "load_showcases", "make_showcase", "save_showcases"]


@dataclass
class Showcase:
    """What the qualitative and clickable-region plots draw for one instance, cropped around it.

    ``image``: ``h x w x 3`` uint8 RGB crop, ``gt``: ``h x w`` bool, ``taps``: ``(label, (x, y) in crop
    pixels, predicted h x w bool mask, IoU)``, ``good_map``: ``h x w`` int8 (-1 not tapped, 0 bad, 1 good),
    ``stride``: mTA stride (a sampled pixel stands for a ``stride x stride`` cell); ``order``: the instance's
    ``(image_id, ann_id)``, how showcases of shards are put back in a single run's order.
    """

    title: str
    image: np.ndarray
    gt: np.ndarray
    taps: list[tuple[str, Tap, np.ndarray, float]]
    good_map: np.ndarray
    stride: int
    mta: float | None
    order: tuple[int, int] = (0, 0)


def make_showcase(
    method: Any,
    image: np.ndarray,
    gt: np.ndarray,
    tapset: TapSet,
    res: InstanceResult,
    stride: int,
    title: str,
    *,
    ignore: np.ndarray | None = None,
) -> Showcase:
    """Crop around one instance and predict its showcased taps: the first click and one tap of bands 1, 3, 5
    (``ignore``: pixels left out of the IoUs shown)."""
    h, w = gt.shape
    bh, bw = tapset.bands.band_map.shape
    x0, y0 = tapset.bands.origin
    pad = max(8, int(0.15 * max(bh, bw)))
    cx0, cy0, cx1, cy1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x0 + bw + pad), min(h, y0 + bh + pad)
    picks: list[tuple[str, Tap]] = [("first click", tapset.first_click)]
    for band in (1, 3, 5):
        if tapset.band_taps.taps[band - 1]:
            picks.append((f"band {band}", tapset.band_taps.taps[band - 1][0]))
    taps = []
    for label, xy in picks:
        pred = method.predict(xy).astype(bool)
        inter, union = iou_counts(pred, gt, ignore=ignore)
        taps.append(
            (label, (xy[0] - cx0, xy[1] - cy0), pred[cy0:cy1, cx0:cx1], inter / union if union else 0.0)
        )
    good = np.full((cy1 - cy0, cx1 - cx0), -1, np.int8)
    if res.good_map is not None:
        good[y0 - cy0 : y0 - cy0 + bh, x0 - cx0 : x0 - cx0 + bw] = res.good_map
    count = int(res.mta_count.sum())
    return Showcase(
        title=title,
        image=image[cy0:cy1, cx0:cx1].copy(),
        gt=gt[cy0:cy1, cx0:cx1].copy(),
        taps=taps,
        good_map=good,
        stride=stride,
        mta=int(res.mta_good.sum()) / count if count else None,
        order=(res.image_id, res.ann_id),
    )


def save_showcases(showcases: list[Showcase], path: str | Path) -> Path:
    """Write ``showcases`` to one compressed ``.npz`` (arrays + a JSON index; nothing pickled)."""
    arrays: dict[str, np.ndarray] = {}
    index: list[dict[str, Any]] = []
    for i, sc in enumerate(showcases):
        arrays[f"{i}_image"], arrays[f"{i}_gt"], arrays[f"{i}_good"] = sc.image, sc.gt, sc.good_map
        taps = []
        for j, (label, xy, pred, iou) in enumerate(sc.taps):
            arrays[f"{i}_pred{j}"] = pred
            taps.append([label, list(xy), iou])
        index.append(
            {"title": sc.title, "taps": taps, "stride": sc.stride, "mta": sc.mta, "order": list(sc.order)}
        )
    arrays["index"] = np.array(json.dumps(index))
    path = Path(path)
    np.savez_compressed(path, **arrays)
    return path


def load_showcases(path: str | Path) -> list[Showcase]:
    """The showcases :func:`save_showcases` wrote to ``path``."""
    with np.load(path, allow_pickle=False) as data:
        index = json.loads(str(data["index"]))
        return [
            Showcase(
                title=entry["title"],
                image=data[f"{i}_image"],
                gt=data[f"{i}_gt"],
                taps=[
                    (label, (int(xy[0]), int(xy[1])), data[f"{i}_pred{j}"], float(iou))
                    for j, (label, xy, iou) in enumerate(entry["taps"])
                ],
                good_map=data[f"{i}_good"],
                stride=int(entry["stride"]),
                mta=entry["mta"],
                order=(int(entry["order"][0]), int(entry["order"][1])),
            )
            for i, entry in enumerate(index)
        ]
