"""Run a method over a benchmark: every instance gets 25 band taps, a first click and its mTA pixels (see
:mod:`tracenet.eval.instance`); results pool into :func:`tracenet.eval.metrics.aggregate`.

:func:`evaluate` takes any :class:`~tracenet.eval.records.Benchmark`; :func:`load_coco_benchmark` builds one from a
COCO JSON, :func:`tracenet.eval.folder.load_folder_benchmark` from an image + mask folder pair, and
:func:`evaluate_coco` / :func:`evaluate_folder` do both steps.

COCO: crowd annotations (``iscrowd=1``) are skipped, as are annotations whose mask rasterises to no pixel; both
are counted in ``metrics.json`` (``skipped``, over the evaluated images). ``max_images`` counts images with at
least one non-crowd annotation (sorted by image id); images without one are never loaded. ``shard = (i, n)``
then keeps every n-th of those images from the i-th (0-based); :mod:`tracenet.eval.merge` adds shards up to
exactly the single run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tracenet.eval.instance import InstanceResult, check_group_key, evaluate_instance
from tracenet.eval.metrics import aggregate, size_of
from tracenet.eval.records import Benchmark, ImageRecord, InstanceRecord, shard_images
from tracenet.eval.showcases import Showcase, make_showcase
from tracenet.eval.taps import N_BANDS, TAPS_PER_BAND, TapSet, simulate_taps

__all__ = [
    "EvalConfig",
    "EvalRun",
    "Showcase",
    "evaluate",
    "evaluate_coco",
    "evaluate_folder",
    "load_coco_benchmark",
    "load_rgb",
    "resolve_stride",
]

AUTO_STRIDE_WITHOUT_KEY = 16


@dataclass
class EvalConfig:
    """Options of one evaluation run.

    ``mta_stride``: None = the method's ``default_mta_stride`` if it has one, else 1 (exact) for methods with a
    ``group_key`` and :data:`AUTO_STRIDE_WITHOUT_KEY` for methods without (brute force is one prediction per
    pixel); 0 = skip mTA. A stride > 1 marks mTA as approximate in the output.
    ``check_group_key``: pixel pairs per image (first instance) on which the method's ``group_key`` promise is
    spot-checked by predicting both taps (:func:`tracenet.eval.instance.check_group_key`); 0 = never.
    ``shard``: ``(index, count)``, 0-based: evaluate only every ``count``-th image from ``index`` (after
    ``max_images``); not with ``max_instances``.
    """

    beta: float = 0.7
    seed: int = 0
    max_images: int | None = None
    max_instances: int | None = None
    mta_stride: int | None = None
    n_showcase: int = 4
    check_group_key: int = 2
    progress: bool = True
    shard: tuple[int, int] | None = None


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


def load_coco_benchmark(ann_path: str | Path, images_dir: str | Path) -> Benchmark:
    """A COCO instances JSON + its image folder as benchmark records: images with a non-crowd annotation, by id;
    their non-crowd annotations by id (crowd ones counted in ``skipped``); masks rasterised when evaluated."""

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

    def instances(anns: list[dict]) -> Iterator[InstanceRecord]:
        for ann in anns:  # one mask at a time: LVIS images can hold hundreds of annotations
            gt = coco.annToMask(ann).astype(bool)
            yield InstanceRecord(
                ann_id=ann["id"],
                category=cat_names.get(ann["category_id"], str(ann["category_id"])),
                area=float(ann.get("area", gt.sum())),
                gt=gt,
            )

    records = []
    for img_id, anns, n_crowd in _image_list(coco, None):
        info = coco.loadImgs(img_id)[0]
        records.append(
            ImageRecord(
                image_id=img_id,
                file=str(info["file_name"]),
                load=lambda info=info: _load_image(info, images_dir, ann_path),
                instances=lambda anns=anns: instances(anns),
                skipped={"crowd": n_crowd},
            )
        )
    return Benchmark(kind="coco", dataset=str(ann_path), images_dir=str(images_dir), images=records)


def evaluate_coco(method: Any, ann_path: str | Path, images_dir: str | Path, config: EvalConfig) -> EvalRun:
    """Evaluate ``method`` on a COCO JSON ``ann_path`` with images in ``images_dir`` (``file_name`` relative)."""
    return evaluate(method, load_coco_benchmark(ann_path, images_dir), config)


def evaluate_folder(
    method: Any, images_dir: str | Path, masks_dir: str | Path, config: EvalConfig
) -> EvalRun:
    """Evaluate ``method`` on a folder benchmark (``images/<stem>.jpg|png`` + ``masks/<stem>.png``, see
    :mod:`tracenet.eval.folder`)."""
    from tracenet.eval.folder import load_folder_benchmark

    return evaluate(method, load_folder_benchmark(images_dir, masks_dir), config)


def _check_key(
    method: Any, tapset: TapSet, gt: np.ndarray, seed: int, ann_id: int, n: int, where: str
) -> tuple[int, int]:
    rng = np.random.default_rng([seed, ann_id, 1])
    checked, bad = check_group_key(method, tapset, gt.shape, rng, n)
    if bad:
        print(
            f"warning: method {method.name!r} gave different masks for two taps with the same "
            f"group_key on {where}: grouped mTA is not exact for it",
            file=sys.stderr,
        )
    return checked, bad


def evaluate(method: Any, benchmark: Benchmark, config: EvalConfig) -> EvalRun:
    """Evaluate ``method`` on every instance of ``benchmark`` (the first ``config.max_images`` images, then
    only shard ``config.shard`` of them): 25 band taps, the first click and the mTA pixels of each."""
    from tqdm import tqdm

    stride = resolve_stride(method, config.mta_stride)
    work = list(benchmark.images)[: config.max_images]
    if config.shard is not None:
        if config.max_instances is not None:
            raise ValueError(
                "--max-instances cannot be combined with --shard (shards would not add up to a "
                "single run); use --max-images"
            )
        work = shard_images(work, *config.shard)

    skipped = {"crowd": 0, "empty_mask": 0}
    key_check = {"checked": 0, "mismatches": 0}
    results: list[InstanceResult] = []
    showcases: list[Showcase] = []
    t_start = time.perf_counter()
    t_method = 0.0
    n_images = 0
    bar = tqdm(work, desc=f"eval {method.name}", unit="img", disable=not config.progress, file=sys.stderr)
    for record in bar:
        if config.max_instances is not None and len(results) >= config.max_instances:
            break
        image = record.load()
        t0 = time.perf_counter()
        method.set_image(image)
        t_method += time.perf_counter() - t0
        n_images += 1
        for reason, count in record.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
        key_checked = False
        for inst in record.instances():
            if config.max_instances is not None and len(results) >= config.max_instances:
                break
            gt = inst.gt
            if not gt.any():
                skipped["empty_mask"] += 1
                continue
            tapset = simulate_taps(gt, seed=config.seed, instance_id=inst.ann_id)
            if not key_checked and config.check_group_key > 0:
                key_checked = True
                checked, bad = _check_key(
                    method, tapset, gt, config.seed, inst.ann_id, config.check_group_key, record.file
                )
                key_check["checked"] += checked
                key_check["mismatches"] += bad
            meta = {
                "ann_id": inst.ann_id,
                "image_id": record.image_id,
                "file": record.file,
                "category": inst.category,
                "size": size_of(inst.area),
                "area": inst.area,
            }
            want_show = len(showcases) < config.n_showcase and inst.area >= 32**2
            t0 = time.perf_counter()
            res = evaluate_instance(
                method,
                gt,
                tapset,
                beta=config.beta,
                mta_stride=stride,
                keep_good_map=want_show,
                meta=meta,
                ignore=inst.ignore,
            )
            t_method += time.perf_counter() - t0
            results.append(res)
            if want_show:
                title = f"{inst.category} #{inst.ann_id}" if benchmark.kind == "coco" else record.file
                showcases.append(
                    make_showcase(method, image, gt, tapset, res, stride or 0, title, ignore=inst.ignore)
                )
        if results and config.progress:
            bar.set_postfix(instances=len(results))
    seconds = time.perf_counter() - t_start

    metrics: dict[str, Any] = {
        "method": method.name,
        "benchmark": benchmark.kind,
        "dataset": benchmark.dataset,
        "images": benchmark.images_dir,
    }
    if getattr(method, "selection", None):
        metrics["selection"] = method.selection
    if getattr(method, "refine", None):
        metrics["refine"] = method.refine
    if getattr(method, "zoom", None):
        metrics["zoom"] = True
        if getattr(method, "zoom_cfg", None) is not None:
            metrics["zoom_cfg"] = asdict(method.zoom_cfg)
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
            "shard": None if config.shard is None else {"index": config.shard[0], "count": config.shard[1]},
            "n_showcase": config.n_showcase,
            "seconds": seconds,
            "seconds_in_method": t_method,
            "seconds_per_image": seconds / n_images if n_images else None,
        }
    )
    return EvalRun(metrics=metrics, instances=results, showcases=showcases)
