"""COCO / LVIS instance annotations -> a flat, format-independent index of images and instances.

COCO JSON is read through ``pycocotools`` and LVIS v1 JSON through the ``lvis`` package; both end up as a list of
:class:`ImageRecord` so the dataset and the augmentations never need to know which format they came from.

Class ids: ``class_agnostic=True`` maps every category to class 0 ("object"); otherwise category ids are mapped,
in increasing id order, to contiguous classes ``0 .. C-1`` (``InstanceIndex.category_ids[c]`` is the JSON id of
class ``c``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["AnnotationRecord", "ImageRecord", "InstanceIndex", "detect_format", "load_instances", "merge_indexes"]

Format = Literal["auto", "coco", "lvis"]


@dataclass(frozen=True)
class AnnotationRecord:
    """One instance: ``segmentation`` is COCO polygons (list of [x0, y0, x1, y1, ...] in image pixels), an
    uncompressed RLE (``counts`` a list) or a compressed RLE (``counts`` a str/bytes); ``iscrowd`` marks a COCO
    crowd region (never a target, its area is ignored by the losses)."""

    category_id: int
    segmentation: Any
    iscrowd: bool
    bbox: tuple[float, float, float, float]  # COCO (x, y, w, h) in image pixels


@dataclass(frozen=True)
class ImageRecord:
    """One image. ``exhaustive`` False marks partial annotations (coco-single): only the listed objects are
    annotated, so nothing else in the photo may be taught as background (see :mod:`tracenet.train.targets`)."""

    image_id: int
    path: Path
    height: int
    width: int
    annotations: tuple[AnnotationRecord, ...] = field(default_factory=tuple)
    exhaustive: bool = True

    @property
    def num_instances(self) -> int:
        """Number of non-crowd annotations."""
        return sum(not a.iscrowd for a in self.annotations)


@dataclass(frozen=True)
class InstanceIndex:
    """All images of one annotation file plus the category -> class map."""

    images: tuple[ImageRecord, ...]
    category_ids: tuple[int, ...]  # JSON category id of each contiguous class (all ids when class-agnostic)
    category_names: tuple[str, ...]
    class_agnostic: bool
    format: str  # "coco" or "lvis"

    @property
    def exhaustive(self) -> bool:
        """True when every image is exhaustively annotated (False if any image has partial annotations)."""
        return all(rec.exhaustive for rec in self.images)

    @property
    def num_classes(self) -> int:
        return 1 if self.class_agnostic else len(self.category_ids)

    @property
    def class_names(self) -> tuple[str, ...]:
        return ("object",) if self.class_agnostic else self.category_names

    def __post_init__(self) -> None:
        object.__setattr__(self, "_class_map", {cid: i for i, cid in enumerate(self.category_ids)})

    def class_of(self, category_id: int) -> int:
        """Contiguous class of a JSON category id (0 for every id when class-agnostic)."""
        if self.class_agnostic:
            return 0
        return self._class_map[category_id]

    def __len__(self) -> int:
        return len(self.images)


def detect_format(dataset: dict) -> str:
    """ "lvis" when the JSON looks like LVIS (categories with ``synset``/``frequency``, images without
    ``file_name`` but with ``coco_url``, or image-level ``not_exhaustive_category_ids``), else "coco"."""
    cats = dataset.get("categories") or [{}]
    imgs = dataset.get("images") or [{}]
    if "synset" in cats[0] or "frequency" in cats[0]:
        return "lvis"
    if "not_exhaustive_category_ids" in imgs[0] or ("file_name" not in imgs[0] and "coco_url" in imgs[0]):
        return "lvis"
    return "coco"


def _coco_api(dataset: dict):
    from pycocotools.coco import COCO

    api = COCO()
    api.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        api.createIndex()
    return api


def _lvis_api(dataset: dict):
    from lvis import LVIS

    # LVIS() only accepts a path; build it from the already-parsed dict (the JSON is not read twice).
    api = LVIS.__new__(LVIS)
    api.logger = logging.getLogger("lvis")
    api.dataset = dataset
    api._create_index()
    return api


def _image_path(img: dict, images_dir: Path) -> Path:
    """COCO: ``file_name``. LVIS v1 has only ``coco_url`` (``.../train2017/000000391895.jpg``): look for the
    basename, then ``split/basename`` under ``images_dir`` (the detectron2 convention)."""
    if img.get("file_name"):
        return images_dir / img["file_name"]
    url = img.get("coco_url", "")
    parts = url.rstrip("/").split("/")
    if len(parts) < 2 or not parts[-1]:
        raise ValueError(f"image {img.get('id')} has neither 'file_name' nor a usable 'coco_url'")
    flat = images_dir / parts[-1]
    nested = images_dir / parts[-2] / parts[-1]
    return nested if not flat.exists() and nested.exists() else flat


def load_instances(
    ann_file: str | os.PathLike,
    images_dir: str | os.PathLike,
    *,
    format: Format = "auto",
    class_agnostic: bool = False,
    filter_empty: bool = True,
    exhaustive: bool = True,
) -> InstanceIndex:
    """Read a COCO or LVIS instance JSON.

    Args:
        ann_file: the JSON file.
        images_dir: folder the image file names are relative to.
        format: "coco", "lvis" or "auto" (see :func:`detect_format`).
        class_agnostic: map every category to class 0.
        filter_empty: drop images without a single non-crowd instance (training default, as detectron2).
        exhaustive: False for a data set whose images list only some of their objects (coco-single): every
            image gets ``exhaustive=False``, and training takes no background from them.

    Returns:
        An :class:`InstanceIndex`, images in increasing ``image_id`` order.
    """
    ann_file, images_dir = Path(ann_file), Path(images_dir)
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file {ann_file} does not exist")
    with open(ann_file) as f:
        dataset = json.load(f)
    fmt = detect_format(dataset) if format == "auto" else format
    if fmt not in ("coco", "lvis"):
        raise ValueError(f"format must be 'auto', 'coco' or 'lvis', got {format!r}")
    for key in ("images", "annotations", "categories"):
        if key not in dataset:
            raise ValueError(f"{ann_file} is not an instance-annotation JSON: no '{key}' key")

    if fmt == "coco":
        api = _coco_api(dataset)
        img_ids = sorted(api.getImgIds())
        imgs = api.loadImgs(img_ids)
        anns_of = [api.loadAnns(api.getAnnIds(imgIds=[i], iscrowd=None)) for i in img_ids]
        cats = api.loadCats(sorted(api.getCatIds()))
    else:
        api = _lvis_api(dataset)
        img_ids = sorted(api.get_img_ids())
        imgs = api.load_imgs(img_ids)
        anns_of = [api.load_anns(api.get_ann_ids(img_ids=[i])) for i in img_ids]
        cats = api.load_cats(sorted(api.get_cat_ids()))

    records = []
    for img, anns in zip(imgs, anns_of, strict=True):
        recs = tuple(
            AnnotationRecord(
                category_id=int(a["category_id"]),
                segmentation=a["segmentation"],
                iscrowd=bool(a.get("iscrowd", 0)),
                bbox=tuple(float(v) for v in a["bbox"]),
            )
            for a in anns
            if a.get("segmentation")  # a few COCO/LVIS anns have no mask at all: useless for a mask model
        )
        rec = ImageRecord(
            image_id=int(img["id"]),
            path=_image_path(img, images_dir),
            height=int(img["height"]),
            width=int(img["width"]),
            annotations=recs,
            exhaustive=exhaustive,
        )
        if filter_empty and rec.num_instances == 0:
            continue
        records.append(rec)
    if not records:
        raise ValueError(f"{ann_file}: no images with instances (filter_empty={filter_empty})")
    return InstanceIndex(
        images=tuple(records),
        category_ids=tuple(int(c["id"]) for c in cats),
        category_names=tuple(str(c["name"]) for c in cats),
        class_agnostic=class_agnostic,
        format=fmt,
    )


def merge_indexes(indexes: list[InstanceIndex]) -> InstanceIndex:
    """One index over several data sources (training on coco-mini train + coco-single), images in the order
    given, each keeping its own ``exhaustive`` flag. Classes are the union of the sources' categories (in
    increasing id order); all sources must agree on ``class_agnostic``."""
    if not indexes:
        raise ValueError("merge_indexes needs at least one index")
    if len({ix.class_agnostic for ix in indexes}) != 1:
        raise ValueError("cannot merge class-agnostic and per-category indexes")
    if len(indexes) == 1:
        return indexes[0]
    names: dict[int, str] = {}
    for ix in indexes:
        for cid, name in zip(ix.category_ids, ix.category_names, strict=True):
            if names.setdefault(cid, name) != name:
                raise ValueError(f"category id {cid} is {names[cid]!r} in one source and {name!r} in another")
    ids = sorted(names)
    formats = {ix.format for ix in indexes}
    return InstanceIndex(
        images=tuple(rec for ix in indexes for rec in ix.images),
        category_ids=tuple(ids),
        category_names=tuple(names[c] for c in ids),
        class_agnostic=indexes[0].class_agnostic,
        format=formats.pop() if len(formats) == 1 else "mixed",
    )
