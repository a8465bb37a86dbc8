"""Run a method over a COCO-format dataset: every non-crowd instance gets 25 band taps, a first click and
its mTA pixels (see :mod:`tracenet.eval.instance`); results pool into :func:`tracenet.eval.metrics.aggregate`.

Crowd annotations (``iscrowd=1``) are skipped, as are annotations whose mask rasterises to no pixel; both are
counted in ``metrics.json`` (``skipped``, over the evaluated images). ``max_images`` counts images with at least
one non-crowd annotation (sorted by image id); images without one are never loaded.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tracenet.eval.instance import InstanceResult, check_group_key, evaluate_instance, iou_counts
from tracenet.eval.metrics import aggregate, size_of
from tracenet.eval.taps import N_BANDS, TAPS_PER_BAND, Tap, TapSet, simulate_taps

__all__ = ["EvalConfig", "EvalRun", "Showcase", "evaluate_coco", "load_rgb", "resolve_stride"]

AUTO_STRIDE_WITHOUT_KEY = 16


@dataclass
class EvalConfig:
    """Options of one evaluation run.

    ``mta_stride``: None = the method's ``default_mta_stride`` if it has one, else 1 (exact) for methods with a
    ``group_key`` and :data:`AUTO_STRIDE_WITHOUT_KEY` for methods without (brute force is one prediction per
    pixel); 0 = skip mTA. A stride > 1 marks mTA as approximate in the output.
    ``check_group_key``: pixel pairs per image (first instance) on which the method's ``group_key`` promise is
    spot-checked by predicting both taps (:func:`tracenet.eval.instance.check_group_key`); 0 = never.
    """

    beta: float = 0.7
    seed: int = 0
    max_images: int | None = None
    max_instances: int | None = None
    mta_stride: int | None = None
    n_showcase: int = 4
    check_group_key: int = 2
    progress: bool = True


@dataclass
class Showcase:
    """What the qualitative and clickable-region plots draw for one instance, cropped around it.

    ``image``: ``h x w x 3`` uint8 RGB crop, ``gt``: ``h x w`` bool, ``taps``: ``(label, (x, y) in crop
    pixels, predicted h x w bool mask, IoU)``, ``good_map``: ``h x w`` int8 (-1 not tapped, 0 bad, 1 good),
    ``stride``: mTA stride (a sampled pixel stands for a ``stride x stride`` cell).
    """

    title: str
    image: np.ndarray
    gt: np.ndarray
    taps: list[tuple[str, Tap, np.ndarray, float]]
    good_map: np.ndarray
    stride: int
    mta: float | None


@dataclass
class EvalRun:
    """``metrics``: the ``metrics.json`` dict; ``instances``: per-instance results; ``showcases``: for plots."""

    metrics: dict[str, Any]
    instances: list[InstanceResult]
    showcases: list[Showcase] = field(default_factory=list)


def load_rgb(path: str | Path) -> np.ndarray:
    """``H x W x 3`` uint8 RGB pixels of an image file as stored (no EXIF rotation: COCO annotations are in
    stored pixel order)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def resolve_stride(method: Any, requested: int | None) -> int | None:
    """The mTA stride to use (see :class:`EvalConfig`); None means mTA is skipped."""
    if requested is not None:
        if requested < 0:
            raise ValueError(f"--mta-stride must be >= 0 (0 skips mTA), got {requested}")
        return requested or None
    default = getattr(method, "default_mta_stride", None)
    if default is not None:
        return int(default)
    return 1 if callable(getattr(method, "group_key", None)) else AUTO_STRIDE_WITHOUT_KEY


def _make_showcase(
    method: Any,
    image: np.ndarray,
    gt: np.ndarray,
    tapset: TapSet,
    res: InstanceResult,
    stride: int,
    title: str,
) -> Showcase:
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
        inter, union = iou_counts(pred, gt)
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
    )


def _image_list(coco: Any, max_images: int | None) -> list[tuple[int, list[dict], int]]:
    """``[(image id, its non-crowd annotations by id, its number of crowd annotations)]``, images by id, only
    those with a usable annotation, the first ``max_images`` of them."""
    work: list[tuple[int, list[dict], int]] = []
    for img_id in sorted(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        usable = [a for a in anns if not a.get("iscrowd", 0)]
        if usable:
            work.append((img_id, sorted(usable, key=lambda a: a["id"]), len(anns) - len(usable)))
    return work if max_images is None else work[:max_images]


def _load_image(info: dict, images_dir: Path, ann_path: Path) -> np.ndarray:
    """Pixels of a COCO ``images`` entry, checked against its ``height`` / ``width``."""
    path = images_dir / info["file_name"]
    if not path.is_file():
        raise FileNotFoundError(
            f"image {info['file_name']} (id {info['id']}) of {ann_path} is not in {images_dir}"
        )
    image = load_rgb(path)
    if image.shape[:2] != (info["height"], info["width"]):
        raise ValueError(
            f"{path}: pixels are {image.shape[1]}x{image.shape[0]} (W x H) but the annotation says "
            f"{info['width']}x{info['height']}; wrong image folder?"
        )
    return image


def evaluate_coco(method: Any, ann_path: str | Path, images_dir: str | Path, config: EvalConfig) -> EvalRun:
    """Evaluate ``method`` on a COCO JSON ``ann_path`` with images in ``images_dir`` (``file_name`` relative)."""
    from tqdm import tqdm

    from tracenet.eval.coco_checks import load_checked_coco

    ann_path, images_dir = Path(ann_path), Path(images_dir)
    if not ann_path.is_file():
        raise FileNotFoundError(
            f"annotation file not found: {ann_path} (pass a COCO instances JSON with --ann)"
        )
    if not images_dir.is_dir():
        raise FileNotFoundError(
            f"image folder not found: {images_dir} (pass the folder of the JSON's file_name)"
        )
    coco = load_checked_coco(ann_path, images_dir)  # crafted coordinates never reach pycocotools
    cat_names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    stride = resolve_stride(method, config.mta_stride)

    skipped = {"crowd": 0, "empty_mask": 0}
    key_check = {"checked": 0, "mismatches": 0}
    work = _image_list(coco, config.max_images)

    results: list[InstanceResult] = []
    showcases: list[Showcase] = []
    t_start = time.perf_counter()
    t_method = 0.0
    n_images = 0
    bar = tqdm(work, desc=f"eval {method.name}", unit="img", disable=not config.progress, file=sys.stderr)
    for img_id, anns, n_crowd in bar:
        if config.max_instances is not None and len(results) >= config.max_instances:
            break
        image = _load_image(coco.loadImgs(img_id)[0], images_dir, ann_path)
        t0 = time.perf_counter()
        method.set_image(image)
        t_method += time.perf_counter() - t0
        n_images += 1
        skipped["crowd"] += n_crowd
        key_checked = False
        for ann in anns:
            if config.max_instances is not None and len(results) >= config.max_instances:
                break
            gt = coco.annToMask(ann).astype(bool)
            if not gt.any():
                skipped["empty_mask"] += 1
                continue
            tapset = simulate_taps(gt, seed=config.seed, instance_id=ann["id"])
            if not key_checked and config.check_group_key > 0:
                key_checked = True
                rng = np.random.default_rng([config.seed, ann["id"], 1])
                checked, bad = check_group_key(method, tapset, gt.shape, rng, config.check_group_key)
                key_check["checked"] += checked
                key_check["mismatches"] += bad
                if bad:
                    print(
                        f"warning: method {method.name!r} gave different masks for two taps with the same "
                        f"group_key on image {img_id}: grouped mTA is not exact for it",
                        file=sys.stderr,
                    )
            meta = {
                "ann_id": ann["id"],
                "image_id": img_id,
                "category": cat_names.get(ann["category_id"], str(ann["category_id"])),
                "size": size_of(float(ann.get("area", gt.sum()))),
                "area": float(ann.get("area", gt.sum())),
            }
            want_show = len(showcases) < config.n_showcase and meta["area"] >= 32**2
            t0 = time.perf_counter()
            res = evaluate_instance(
                method, gt, tapset, beta=config.beta, mta_stride=stride, keep_good_map=want_show, meta=meta
            )
            t_method += time.perf_counter() - t0
            results.append(res)
            if want_show:
                title = f"{meta['category']} #{ann['id']}"
                showcases.append(_make_showcase(method, image, gt, tapset, res, stride or 0, title))
        if results and config.progress:
            bar.set_postfix(instances=len(results))
    seconds = time.perf_counter() - t_start

    metrics: dict[str, Any] = {"method": method.name, "dataset": str(ann_path), "images": str(images_dir)}
    if getattr(method, "selection", None):
        metrics["selection"] = method.selection
    metrics.update(aggregate(results))
    metrics.update(
        {
            "n_images": n_images,
            "beta": config.beta,
            "seed": config.seed,
            "n_bands": N_BANDS,
            "taps_per_band": TAPS_PER_BAND,
            "approximate": {
                "mta": stride is not None and stride > 1,
                "mta_stride": stride or 0,
                "mta_skipped": stride is None,
            },
            "skipped": skipped,
            "group_key_check": key_check,
            "max_images": config.max_images,
            "max_instances": config.max_instances,
            "seconds": seconds,
            "seconds_in_method": t_method,
            "seconds_per_image": seconds / n_images if n_images else None,
        }
    )
    return EvalRun(metrics=metrics, instances=results, showcases=showcases)
