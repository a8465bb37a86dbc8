"""First-click IoU of GrabCut refinement settings, on one benchmark, from one pass of the network.

Runs the bundled model (tap ranker, no refinement) once per object at the field's first click (the object pixel
farthest from its boundary), keeps the chosen candidate's probabilities, then refines them with each setting and
prints a Markdown table: mIoU@1, the share of objects at IoU >= 0.85 / 0.90, the mean over the objects whose
unrefined mask already had IoU >= 0.5 (the right object: where only the boundary can change), and ms per object.
How session 10 chose the small-object trimap (on coco-mini val; GrabCut / Berkeley only as the check);
``--dump`` keeps per-object IoUs with each mask's share of the photo and colour overlap with its surroundings, to
test a rule that picks a setting per object offline (session 12, the large-mask trimap).

    python benchmarks/refine_sweep.py --set val --data ../shared/data
    python benchmarks/refine_sweep.py --set GrabCut --variant none --variant default --variant trimap=0.7/0.3
    python benchmarks/refine_sweep.py --set Berkeley --checkpoint RANKED.safetensors --variant default --variant band=1

A variant is ``none``, ``default`` (``RefineConfig()``) or comma-separated ``field=value`` overrides of
:class:`tracenet.refine.RefineConfig`; pairs (``trimap``, ``small_trimap``) are written ``a/b``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tracenet  # noqa: E402
from tracenet.eval.evaluate import load_coco_benchmark  # noqa: E402
from tracenet.eval.folder import load_folder_benchmark  # noqa: E402
from tracenet.eval.taps import first_click  # noqa: E402
from tracenet.refine import RefineConfig, _crop, refine_mask  # noqa: E402

DEFAULT_VARIANTS = ["none", "default", "small_share=0", "small_share=0,trimap=0.8/0.2",
                    "small_share=0,trimap=0.7/0.3", "small_share=0,iterations=1", "small_share=0,max_side=384"]


def _benchmark(name: str, data: Path):
    if name == "val":
        return load_coco_benchmark(data / "coco-mini" / "val.json", data / "coco-mini" / "images")
    return load_folder_benchmark(data / "interactive" / name / "images", data / "interactive" / name / "masks")


def _config(variant: str) -> RefineConfig | None:
    if variant == "none":
        return None
    if variant == "default":
        return RefineConfig()
    fields = {f.name: f for f in dataclasses.fields(RefineConfig)}
    kwargs = {}
    for item in variant.split(","):
        key, value = item.split("=")
        if key not in fields:
            raise SystemExit(f"unknown RefineConfig field {key!r} (fields: {', '.join(fields)})")
        default = getattr(RefineConfig(), key)
        kwargs[key] = tuple(float(v) for v in value.split("/")) if isinstance(default, tuple) else type(default)(value)
    return RefineConfig(**kwargs)


def _iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None) -> float:
    if ignore is not None:
        pred, gt = pred & ~ignore, gt & ~ignore
    union = (pred | gt).sum()
    return float((pred & gt).sum() / union) if union else 1.0


def first_click_probs(bench, checkpoint: str | None = None) -> tuple[list[dict], dict]:
    """Per object: ground truth, ignore mask, unrefined mask, the chosen candidate's photo-size probabilities
    (``None`` when the tap found nothing) and the mask cell in photo pixels; the photos by image id."""
    seg = tracenet.load(checkpoint, refine="none", zoom=False)
    kept: dict[str, np.ndarray] = {}

    def keep(self, photo_probs, mask, cell):
        kept["probs"] = np.asarray(photo_probs, dtype=np.float32).copy()
        kept["cell"] = cell  # what the predictor passes to refine_mask
        return mask

    seg._refined = types.MethodType(keep, seg)  # the predictor's refinement hook: keep what it would refine
    objects, photos = [], {}
    for rec in bench.images:
        photos[rec.image_id] = image = rec.load()
        seg.set_image(image)
        for inst in rec.instances():
            if inst.gt.any():
                kept.clear()
                result = seg.predict(first_click(inst.gt))
                objects.append({"image_id": rec.image_id, "gt": inst.gt, "ignore": inst.ignore,
                                "mask": result.mask.copy(), "probs": kept.get("probs"),
                                "cell": kept.get("cell", 8.0)})
    return objects, photos


def colour_overlap(image: np.ndarray, mask: np.ndarray) -> float:
    """Histogram intersection (0: disjoint, 1: the same) of the colours inside ``mask`` and around it in the
    refinement crop, 8 bins per RGB channel: how much GrabCut's colour models can tell the object apart."""
    crop = _crop(mask, RefineConfig())
    if crop is None:
        return 1.0
    q = (image[crop] // 32).astype(np.int64)
    bins, inside = q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2], mask[crop]
    if inside.all():
        return 1.0
    h_in = np.bincount(bins[inside], minlength=512) / inside.sum()
    h_out = np.bincount(bins[~inside], minlength=512) / (~inside).sum()
    return float(np.minimum(h_in, h_out).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="val", help="val (coco-mini), GrabCut or Berkeley")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--variant", action="append", help=f"repeatable (default: {', '.join(DEFAULT_VARIANTS)})")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", help="model to refine (default: the bundled one)")
    ap.add_argument("--min-share", type=float, default=0.0,
                    help="score only the objects whose unrefined mask covers at least this share of the photo")
    ap.add_argument("--dump", type=Path, help="also save per-object IoUs by variant, mask share and unrefined IoU "
                    "(.npz) to study a rule offline")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    objects, photos = first_click_probs(_benchmark(args.set, args.data), args.checkpoint)
    for o in objects:
        o["share"] = float(o["mask"].mean())
    objects = [o for o in objects if o["share"] >= args.min_share]
    unrefined = np.array([_iou(o["mask"], o["gt"], o["ignore"]) for o in objects])
    right = unrefined >= 0.5
    print(f"{args.set}: {len(objects)} objects, {int(right.sum())} with unrefined IoU@1 >= 0.5\n")
    print("| refinement | mIoU@1 | IoU@1 >= 0.85 | IoU@1 >= 0.90 | mIoU@1, right object | ms / object |")
    print("|---|---:|---:|---:|---:|---:|")
    per_variant = {}
    for variant in args.variant or DEFAULT_VARIANTS:
        cfg = _config(variant)
        start = time.perf_counter()
        ious = np.array([
            _iou(o["mask"] if cfg is None or o["probs"] is None
                 else refine_mask(photos[o["image_id"]], o["probs"], "grabcut", cfg, cell=o["cell"]),
                 o["gt"], o["ignore"])
            for o in objects])
        ms = (time.perf_counter() - start) * 1e3 / len(objects)
        per_variant[variant] = ious
        print(f"| {variant} | {ious.mean():.4f} | {np.mean(ious >= 0.85):.3f} | {np.mean(ious >= 0.9):.3f} | "
              f"{ious[right].mean():.4f} | {ms:.0f} |")
    if args.dump:
        share = np.array([o["share"] for o in objects])
        confident = np.array([0.0 if o["probs"] is None else float(((o["probs"] >= 0.9) | (o["probs"] <= 0.1)).mean())
                              for o in objects])
        np.savez(args.dump, variants=np.array(list(per_variant)), ious=np.stack(list(per_variant.values())),
                 share=share, confident=confident, unrefined=unrefined,
                 overlap=np.array([colour_overlap(photos[o["image_id"]], o["mask"]) for o in objects]))


if __name__ == "__main__":
    main()
