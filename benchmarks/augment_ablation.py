"""What the data-efficiency augmentations buy: short lite0 runs with and without them, scored on val.

Each arm is the ``cpu`` training preset (lite0, class-agnostic, 384-pixel canvas, ImageNet backbone, same seed and
data order) shortened to ``--iters`` iterations, differing only in augmentation:

- ``fit + flip``: every image fit to the 384 canvas (LSJ with scale fixed at 1.0), horizontal flip;
- ``LSJ + flip``: large-scale jitter, scale 0.3-2.0;
- ``LSJ + copy-paste + flip``: the ``cpu`` preset's recipe (copy-paste probability 0.5).

Each run is scored with FullNet (identical to TraceNet, faster for mTA) on the first ``--val-images`` val images
at the model's inference size. Runs resume from their checkpoints when interrupted; finished arms are not
retrained. Prints a Markdown table and writes ``ablation.json`` into ``--out``.

    python benchmarks/augment_ablation.py --data ../shared/data/coco-mini --out runs/ablation
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

ARMS = {
    "fit + flip": {"lsj_scale": (1.0, 1.0), "copy_paste_prob": 0.0},
    "LSJ + flip": {"copy_paste_prob": 0.0},
    "LSJ + copy-paste + flip": {},
}


def train_arm(name: str, changes: dict, args: argparse.Namespace) -> Path:
    """Train one arm (or resume / reuse it); returns its exported ``model_final.safetensors``."""
    from tracenet.train import train, train_preset

    out = args.out / name.replace(" ", "").replace("+", "_")
    final = out / "model_final.safetensors"
    if final.is_file():
        return final
    base = train_preset("cpu")
    cfg = train_preset(
        "cpu",
        max_iters=args.iters,
        batch_size=args.batch,
        lr=base.lr * args.batch / base.batch_size,
        steps=(int(args.iters * 0.8),),
        warmup_iters=min(base.warmup_iters, args.iters // 5),
        checkpoint_every=max(1, args.iters // 4),
        augment=dataclasses.replace(base.augment, **changes),
    )
    resume = out if (out / "last_checkpoint").is_file() else None
    return train(
        cfg,
        ann_file=args.data / "train.json",
        images_dir=args.data / "images",
        out_dir=out,
        resume=resume,
        progress=not args.quiet,
    )


def score(model_file: Path, args: argparse.Namespace) -> dict:
    """mIoU-T / mTA / first-click IoU of ``model_file`` on the first ``--val-images`` val images."""
    import tracenet
    from tracenet.eval.evaluate import EvalConfig, evaluate_coco
    from tracenet.eval.methods import TraceNetMethod

    method = TraceNetMethod(segmenter=tracenet.load(model_file), use_rft=False)
    cfg = EvalConfig(max_images=args.val_images, progress=not args.quiet, check_group_key=0)
    m = evaluate_coco(method, args.data / "val.json", args.data / "images", cfg).metrics
    return {k: m[k] for k in ("miou_t", "mta", "first_click_iou", "n_instances", "n_images")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder with train.json, val.json and images/")
    p.add_argument("--out", type=Path, required=True, help="folder for the runs and ablation.json")
    p.add_argument("--iters", type=int, default=600, help="training iterations per arm (default 600)")
    p.add_argument("--batch", type=int, default=8, help="batch size (lr scaled linearly; default 8)")
    p.add_argument("--val-images", type=int, default=30, help="val images scored per arm (default 30)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--arms", nargs="*", choices=list(ARMS), help="only these arms (default all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "ablation.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in args.arms or ARMS:
        key = f"{name} @ {args.iters} it x {args.batch}"
        if key not in results:
            results[key] = score(train_arm(name, ARMS[name], args), args)
            results_file.write_text(json.dumps(results, indent=2) + "\n")
    print(f"| augmentation (val, first {args.val_images} images) | mIoU-T | mTA | first-click IoU |")
    print("|---|---:|---:|---:|")
    for key, r in results.items():
        print(f"| {key} | {r['miou_t']:.3f} | {r['mta']:.3f} | {r['first_click_iou']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
