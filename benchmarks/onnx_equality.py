"""Does the ONNX export answer taps like the PyTorch model? coco-mini val, first clicks and band taps.

For every tap (first click + the paper's 25 band taps of every non-crowd instance, seed 0) both engines answer
through the same predictor core: PyTorch FullNet (which the tests show equal to the traced path) and
onnxruntime on an export folder. Reported per selection rule (the tap ranker, the paper's NMS top-1): the share
of taps where both choose the same candidate (same found / level / class) and their masks reach IoU >= 0.995,
the taps that do not (listed), and the largest |difference| of candidate scores, of the chosen candidate's
stride-8 mask logits and of the encoder's maps.

    python benchmarks/onnx_equality.py --export tracenet/weights/default-onnx --out results/onnx
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tracenet.deploy.engine import OnnxTapSegmenter
from tracenet.eval.evaluate import _image_list, _load_image
from tracenet.eval.taps import simulate_taps
from tracenet.model import dynamic_mask_logits, full_gather
from tracenet.model.postprocess import all_candidates
from tracenet.predictor import TapSegmenter
from tracenet.tap.geometry import LEVELS

IOU_MIN = 0.995


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def torch_mask_logits(seg: TapSegmenter, cand) -> np.ndarray:
    """The candidate's stride-8 mask logits from FullNet's cached mask features (``[H_3, W_3]``)."""
    with torch.no_grad():
        return dynamic_mask_logits(seg._full_out["mask_feats"], cand.params[None], torch.zeros(1, dtype=torch.long),
                                   torch.tensor([cand.location_xy]), torch.tensor([cand.level - LEVELS[0]]))[0].numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, default=None, help="export folder (default: the bundled one)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="its checkpoint (default: the bundled one)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/coco-mini"))
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--skip-images", type=int, default=0, help="start after this many images (to split a run)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("results/onnx"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pycocotools.coco import COCO

    ann = args.data / "val.json"
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann))
    engines = {sel: (TapSegmenter.from_checkpoint(args.checkpoint, selection=sel),
                     OnnxTapSegmenter(args.export, selection=sel, threads=args.threads)) for sel in ("ranker", "paper")}
    stats = {sel: {"taps": 0, "equal": 0, "same_candidate": 0, "misses": [], "max_score_diff": 0.0,
                   "max_mask_logit_diff": 0.0} for sel in engines}
    max_map_diff = 0.0
    work = _image_list(coco, args.max_images)[args.skip_images:]
    start = time.time()
    for i, (img_id, anns, _) in enumerate(work):
        info = coco.loadImgs(img_id)[0]
        image = _load_image(info, args.data / "images", ann)
        taps = []
        for a in anns:
            gt = coco.annToMask(a).astype(bool)
            if gt.any():
                ts = simulate_taps(gt, seed=0, instance_id=a["id"])
                taps += [("first", a["id"], ts.first_click)] + [(f"band{b}", a["id"], t) for b, t in ts.band_taps.flat()]
        for sel, (seg, onx) in engines.items():
            seg.set_image(image)
            onx.set_image(image)
            if sel == "ranker":
                seg.predict(taps[0][2], use_rft=False)  # fills FullNet's cache for the map comparison
                max_map_diff = max(max_map_diff, float(np.abs(seg._full_out["mask_feats"].numpy()
                                                              - onx._feats["mask_feats"]).max()))
            answers: dict = {}
            for kind, ann_id, xy in taps:
                key = seg.tap_key(xy)
                if key not in answers:
                    a, b = seg.predict(xy, use_rft=False), onx.predict(xy)
                    out = onx.decode(list(key))
                    s = stats[sel]
                    every = all_candidates(full_gather(seg._full_out, list(key)), list(key))
                    s["max_score_diff"] = max(s["max_score_diff"], float(np.abs(
                        np.array([c.score for c in every], dtype=np.float32) - out["scores"]).max()))
                    if a.found and b.found:
                        k = a.class_id * len(LEVELS) + a.level - LEVELS[0]
                        s["max_mask_logit_diff"] = max(s["max_mask_logit_diff"], float(np.abs(
                            torch_mask_logits(seg, every[k]) - out["mask_logits"][k]).max()))
                    same = (a.found, a.level, a.class_id) == (b.found, b.level, b.class_id)
                    answers[key] = (same, mask_iou(a.mask, b.mask))
                same, iou = answers[key]
                s = stats[sel]
                s["taps"] += 1
                s["same_candidate"] += same
                s["equal"] += same and iou >= IOU_MIN
                if not (same and iou >= IOU_MIN):
                    s["misses"].append({"image": img_id, "annotation": ann_id, "tap": kind, "xy": list(map(float, xy)),
                                        "same_candidate": same, "iou": iou})
        print(f"[{i + 1}/{len(work)}] {time.time() - start:.0f} s  " + "  ".join(
            f"{sel}: {s['equal']}/{s['taps']}" for sel, s in stats.items()), file=sys.stderr, flush=True)
        table = _write(args.out, stats, max_map_diff, i + 1)  # after every image: an interrupted run keeps its part
    print(table)
    return 0


def _write(out: Path, stats: dict, max_map_diff: float, images: int) -> str:
    result = {"images": images, "iou_min": IOU_MIN, "max_mask_feats_diff": max_map_diff,
              "selections": {sel: {**s, "share_equal": s["equal"] / max(1, s["taps"])} for sel, s in stats.items()}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "equality.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| selection | taps | same candidate | same candidate and IoU >= 0.995 | max abs score diff | "
             "max abs mask-logit diff |", "|---|---:|---:|---:|---:|---:|"]
    for sel, s in stats.items():
        lines.append(f"| {sel} | {s['taps']} | {s['same_candidate'] / max(1, s['taps']):.4f} | "
                     f"{s['equal'] / max(1, s['taps']):.4f} ({s['taps'] - s['equal']} not) | "
                     f"{s['max_score_diff']:.2e} | {s['max_mask_logit_diff']:.2e} |")
    lines.append(f"\nmax abs mask_feats difference (encoder): {max_map_diff:.2e}; images: {images}")
    table = "\n".join(lines) + "\n"
    (out / "equality.md").write_text(table)
    return table


if __name__ == "__main__":
    sys.exit(main())
