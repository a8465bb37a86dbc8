"""What the data-efficiency augmentations buy: lite0 runs with and without them, scored on val.

Each arm trains the ``cpu`` preset (lite0, class-agnostic, 384-pixel canvas, ImageNet backbone, same seed, data
order and learning-rate schedule as the bundled default model) for its first ``--iters`` iterations, differing
only in augmentation:

- ``fit + flip``: every image fit to the 384 canvas (LSJ with scale fixed at 1.0), horizontal flip;
- ``LSJ + flip``: large-scale jitter, scale 0.3-2.0;
- ``LSJ + copy-paste + flip``: the ``cpu`` preset's recipe (copy-paste probability 0.5), i.e. the default
  model's own run after ``--iters`` iterations; ``--reuse NAME=MODEL.safetensors`` scores an existing model for
  an arm instead of training it (e.g. the default run's exported checkpoint at that iteration).

Each model is exported in fp16 (as the default) and scored with FullNet (identical to TraceNet, faster for mTA)
on the first ``--val-images`` val images at its inference size. Interrupted arms resume from their checkpoints;
scored arms are kept in ``ablation.json``. Prints a Markdown table.

    python benchmarks/augment_ablation.py --data ../shared/data/coco-mini --out runs/ablation \
        --reuse "LSJ + copy-paste + flip=/tmp/step1000.safetensors"

where ``/tmp/step1000.safetensors`` is the default run's step-1000 export
(``git show e52aa38:tracenet/weights/default.safetensors``, see ``training/README.md``).
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
    """Train one arm for ``args.iters`` iterations (or resume it); returns its fp16 model file."""
    from tracenet.train import train, train_preset
    from tracenet.train.export import export_model

    out = args.out / name.replace(" ", "").replace("+", "_")
    model_file = out / f"model_{args.iters}.safetensors"
    if model_file.is_file():
        return model_file
    base = train_preset("cpu")
    cfg = dataclasses.replace(base, augment=dataclasses.replace(base.augment, **changes))
    resume = out if (out / "last_checkpoint").is_file() else None
    ckpt = train(
        cfg,
        ann_file=args.data / "train.json",
        images_dir=args.data / "images",
        out_dir=out,
        resume=resume,
        stop_at=args.iters,
        progress=not args.quiet,
    )
    return export_model(ckpt, model_file, fp16=True, meta={"ablation_arm": name, "step": args.iters})


def score(model_file: Path, args: argparse.Namespace) -> dict:
    """mIoU-T / mTA / first-click IoU of ``model_file`` on the first ``--val-images`` val images."""
    import tracenet
    from tracenet.eval.evaluate import EvalConfig, evaluate_coco
    from tracenet.eval.methods import TraceNetMethod
    from tracenet.train import train_preset
    from tracenet.train.export import inference_max_side

    side = inference_max_side(train_preset("cpu").augment)  # every arm trains on the same canvas
    method = TraceNetMethod(segmenter=tracenet.load(model_file, max_side=side, zoom=False), use_rft=False)
    cfg = EvalConfig(max_images=args.val_images, progress=not args.quiet, check_group_key=0)
    m = evaluate_coco(method, args.data / "val.json", args.data / "images", cfg).metrics
    return {k: m[k] for k in ("miou_t", "mta", "first_click_iou", "n_instances", "n_images")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder with train.json, val.json and images/")
    p.add_argument("--out", type=Path, required=True, help="folder for the runs and ablation.json")
    p.add_argument("--iters", type=int, default=1000, help="training iterations per arm (default 1000)")
    p.add_argument(
        "--reuse", action="append", default=[], metavar="ARM=MODEL", help="score MODEL for ARM instead of training"
    )
    p.add_argument("--val-images", type=int, default=30, help="val images scored per arm (default 30)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--arms", nargs="*", choices=list(ARMS), help="only these arms (default all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "ablation.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    reuse = dict(item.split("=", 1) for item in args.reuse)
    unknown = set(reuse) - set(ARMS)
    if unknown:
        p.error(f"--reuse: unknown arm(s) {sorted(unknown)}; arms are {list(ARMS)}")
    for name in args.arms or ARMS:
        key = f"{name} @ {args.iters} iterations"
        if key not in results:
            model = Path(reuse[name]) if name in reuse else train_arm(name, ARMS[name], args)
            scored = score(model, args)
            # re-read before writing: arms may run as parallel processes (``--arms``) sharing this file
            results = json.loads(results_file.read_text()) if results_file.is_file() else {}
            results[key] = scored
            results_file.write_text(json.dumps(results, indent=2) + "\n")
    print(f"| augmentation (val, first {args.val_images} images) | mIoU-T | mTA | first-click IoU |")
    print("|---|---:|---:|---:|")
    for key, r in results.items():
        print(f"| {key} | {r['miou_t']:.3f} | {r['mta']:.3f} | {r['first_click_iou']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
