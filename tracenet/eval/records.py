"""What the evaluator measures, whatever the source format: a :class:`Benchmark` of :class:`ImageRecord`\\ s, each
yielding :class:`InstanceRecord`\\ s.

Two loaders build these records: :func:`tracenet.eval.evaluate.load_coco_benchmark` (a COCO / LVIS-style JSON
plus an image folder) and :func:`tracenet.eval.folder.load_folder_benchmark` (``images/<stem>.(jpg|png)`` +
``masks/<stem>.png``, GrabCut / Berkeley / DAVIS style). :func:`tracenet.eval.evaluate.evaluate` runs any method
over any benchmark, so every metric, report and plot is shared by both formats.

Order matters for exact results: images are evaluated in list order and the instances of an image in the order
``instances()`` returns them; both loaders sort by ``(image_id, ann_id)``, which is how
:mod:`tracenet.eval.merge` puts shards back together. :func:`shard_images` picks every N-th image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Benchmark", "ImageRecord", "InstanceRecord", "parse_shard", "shard_images"]


@dataclass(frozen=True)
class InstanceRecord:
    """One object to tap on a loaded image.

    ``gt``: ``H x W`` bool object mask (may be empty: the evaluator skips it and counts ``empty_mask``).
    ``ignore``: ``H x W`` bool pixels left out of every IoU (prediction and ground truth alike; GrabCut's 128
    band), or None. ``area``: what the COCO size buckets use (the annotation's ``area``, else the mask's pixels).
    """

    ann_id: int
    category: str
    area: float
    gt: np.ndarray
    ignore: np.ndarray | None = None


@dataclass(frozen=True)
class ImageRecord:
    """One image of a benchmark; nothing is read until the evaluator calls ``load`` / ``instances``.

    ``file``: the image's path relative to the benchmark's image folder (named in per-object rows and errors).
    ``load()``: ``H x W x 3`` uint8 RGB pixels. ``instances()``: the image's objects, in evaluation order (a
    list or a generator: the evaluator reads them one at a time).
    ``skipped``: annotations of this image left out before loading, by reason (e.g. ``{"crowd": 1}``).
    """

    image_id: int
    file: str
    load: Callable[[], np.ndarray]
    instances: Callable[[], Iterable[InstanceRecord]]
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    """``kind``: ``"coco"`` or ``"folder"``; ``dataset``: the annotation JSON or the masks folder, as
    ``metrics.json`` names it; ``images_dir``: the image folder; ``images``: sorted by ``image_id``."""

    kind: str
    dataset: str
    images_dir: str
    images: Sequence[ImageRecord]


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (1 <= I <= N, 1-based as people count machines) -> ``(I - 1, N)``; ValueError otherwise."""
    parts = text.split("/")
    try:
        index, count = int(parts[0]), int(parts[1])
        if len(parts) != 2:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"--shard must look like I/N (e.g. 2/4), got {text!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text}: need 1 <= I <= N")
    return index - 1, count


def shard_images(images: Sequence[ImageRecord], index: int, count: int) -> list[ImageRecord]:
    """Every ``count``-th image starting at ``index`` (0-based): shard ``index`` of ``count``. The shards
    partition ``images`` and keep their order, so merging them by ``(image_id, ann_id)`` restores a single run."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in 0..{count - 1}")
    return list(images[index::count])
