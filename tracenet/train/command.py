"""``tracenet train`` / ``python -m tracenet.train``: argument parsing around :func:`tracenet.train.train`.

Examples::

    python -m tracenet.train --preset cpu --data ../shared/data/coco-mini --out runs/lite0-cpu
    python -m tracenet.train --preset cpu --data-preset coco-mini+single --out runs/lite0-single  # + coco-single
    python -m tracenet.train --preset cpu --data-preset coco-mini+single --device cuda --batch 32 --out runs/gpu
    python -m tracenet.train --resume runs/lite0-cpu   # the run's own arguments, from its train_args.json
    torchrun --nproc_per_node 8 -m tracenet.train --preset paper \\
        --ann coco/annotations/instances_train2017.json --images coco/train2017 --out runs/r50-coco
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from tracenet.data.sources import (
    DATA_PRESETS,
    DataSource,
    EvalOnlyDataError,
    preset_sources,
    source_from_folder,
)
from tracenet.train.config import ARGS_FILE, TRAIN_PRESETS, train_preset

__all__ = ["add_arguments", "run", "ARGS_FILE", "RECORDED_ARGS"]

log = logging.getLogger(__name__)

RECORDED_ARGS = (
    "preset", "data", "ann", "images", "partial", "data_preset", "data_root", "lvis", "coco", "iters", "batch", "lr",
    "model", "backbone_weights", "canvas", "copy_paste", "seed", "num_workers", "checkpoint_every", "class_agnostic",
    "fp16", "amp",
)
"""Arguments written to :data:`ARGS_FILE` (the run's recipe). Not recorded: where and how it runs (``--device``,
``--threads``, ``--stop-at``, ``--eval-every``, ``--no-progress``)."""

_PATH_ARGS = {"data", "ann", "images", "data_root"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the training options to ``parser``."""
    parser.add_argument(
        "--preset", choices=sorted(TRAIN_PRESETS), help="training preset (default: cpu, or the resumed run's)"
    )
    parser.add_argument(
        "--data", type=Path, help="folder with train.json and images/ (or give --ann and --images)"
    )
    parser.add_argument("--ann", type=Path, help="COCO or LVIS instance JSON (overrides --data's train.json)")
    parser.add_argument("--images", type=Path, help="image folder (overrides --data's images/)")
    parser.add_argument(
        "--partial",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="add a folder with partial annotations (its JSON + images/; e.g. coco-single): its listed objects "
        "train as positives, nothing in its photos as background. Repeatable",
    )
    parser.add_argument(
        "--data-preset",
        choices=sorted(DATA_PRESETS),
        help="a named mix of the folders under --data-root: coco-mini (train.json) or coco-mini+single "
        "(+ coco-single as partial annotations); replaces --data",
    )
    parser.add_argument(
        "--data-root", type=Path, help="root of --data-preset (default: ../shared/data)"
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--lvis", action="store_true", help="the JSON is LVIS (default: auto-detect)")
    fmt.add_argument("--coco", action="store_true", help="the JSON is COCO (default: auto-detect)")
    parser.add_argument(
        "--out",
        type=Path,
        help="run folder (checkpoints, metrics, final model, train_args.json); default with --resume: the resumed run",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        help="continue exactly from a checkpoint folder or a run folder; arguments not given are taken from the "
        "run's train_args.json",
    )
    parser.add_argument(
        "--iters", type=int, help="override the number of iterations (LR steps and warmup scale with it)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        help="global batch size; the preset's schedule is kept in images (linear rule: lr x k, iterations, LR "
        "steps and warmup / k for k = batch / preset batch), unless --lr / --iters are given too",
    )
    parser.add_argument("--lr", type=float, help="override the base learning rate")
    parser.add_argument(
        "--model", help="override the model preset (tracenet.model.PRESETS: lite0, r50, r101, ...)"
    )
    parser.add_argument(
        "--backbone-weights",
        help="ImageNet backbone weights: a local .pth/.safetensors state dict or a torchvision weights name",
    )
    parser.add_argument(
        "--canvas", type=int, help="large-scale-jitter canvas in px (the cpu preset: 384); also the model's max_side"
    )
    parser.add_argument("--copy-paste", type=float, metavar="P", help="copy-paste probability (the cpu preset: 0.5)")
    parser.add_argument("--seed", type=int, help="override the seed (data order, augmentation, init)")
    parser.add_argument("--num-workers", type=int, help="data-loader worker processes per rank")
    parser.add_argument("--checkpoint-every", type=int, help="iterations between checkpoints")
    parser.add_argument(
        "--stop-at", type=int, help="stop after this many iterations (checkpointed; resume later)"
    )
    classes = parser.add_mutually_exclusive_group()
    classes.add_argument("--class-agnostic", action="store_true", default=None, help="one 'object' class")
    classes.add_argument(
        "--per-category", dest="class_agnostic", action="store_false", help="one class per category"
    )
    parser.add_argument("--fp16", action="store_true", help="store the exported final model in float16")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument(
        "--amp",
        choices=["auto", "bf16", "off"],
        help="autocast of the network (default auto: bf16 on CUDA, float32 on CPU; losses always float32)",
    )
    parser.add_argument("--threads", type=int, help="torch intra-op threads (CPU training)")
    parser.add_argument(
        "--eval-every", type=int, default=0, help="run the evaluation hook every N iterations"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--export",
        type=Path,
        metavar="MODEL.safetensors",
        help="do not train: export the newest checkpoint of --resume (or --out) as a plain model file and exit",
    )


def _run_folder(resume: Path) -> Path | None:
    """The run folder of ``--resume`` (a run folder, or a checkpoint folder ``RUN/checkpoints/step_N``) that holds
    :data:`ARGS_FILE`, or ``None``."""
    for folder in (resume, resume.parent.parent):
        if (folder / ARGS_FILE).is_file():
            return folder
    return None


def _is_unset(args: argparse.Namespace, name: str) -> bool:
    """Whether ``name`` was left at its parser default (``--per-category`` sets ``class_agnostic`` to False)."""
    value = getattr(args, name)
    if name == "class_agnostic":
        return value is None
    return value is None or value is False or value == []


def complete_from_run(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the arguments not given on the command line from the resumed run's :data:`ARGS_FILE` (given ones win),
    default ``--out`` to the resumed run, then apply the defaults. Raises ``ValueError`` when there is no run folder
    to write to, or the file is not an arguments file."""
    run_dir = _run_folder(args.resume) if args.resume is not None else None
    if run_dir is not None:
        try:
            recorded = json.loads((run_dir / ARGS_FILE).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{run_dir / ARGS_FILE}: not a readable arguments file ({err})") from err
        if not isinstance(recorded, dict):
            raise ValueError(f"{run_dir / ARGS_FILE}: not a readable arguments file (not a JSON object)")
        taken = []
        for name in RECORDED_ARGS:
            if name in recorded and recorded[name] is not None and _is_unset(args, name):
                value: Any = recorded[name]
                if name in _PATH_ARGS:
                    value = Path(value)
                elif name == "partial":
                    value = [Path(v) for v in value]
                setattr(args, name, value)
                taken.append(name)
        if taken:
            log.info("--resume %s: took %s from %s", args.resume, ", ".join(taken), run_dir / ARGS_FILE)
        if args.out is None:
            args.out = run_dir
    if args.out is None:
        if args.resume is not None:
            raise ValueError(f"--resume {args.resume}: no {ARGS_FILE} there (a run from before it was recorded); "
                             "give --out and the run's original arguments")
        raise ValueError("give --out (the run folder)")
    if args.preset is None:
        args.preset = "cpu"
    if args.data_root is None:
        args.data_root = Path("../shared/data")
    return args


def run_args_record(args: argparse.Namespace) -> dict[str, Any]:
    """The run's recipe (:data:`RECORDED_ARGS`) as JSON values, what :data:`ARGS_FILE` holds."""
    record: dict[str, Any] = {}
    for name in RECORDED_ARGS:
        value = getattr(args, name)
        if isinstance(value, Path):
            value = str(value)
        elif name == "partial":
            value = [str(v) for v in value]
        record[name] = value
    return record


def _sources(args: argparse.Namespace) -> list[DataSource]:
    """The training sources named by --data-preset / --data / --ann + --images / --partial; raises ``ValueError``
    or ``FileNotFoundError`` naming the bad input (the command line turns both into exit code 2)."""
    if args.data_preset is not None:
        if args.data is not None or args.ann is not None:
            raise ValueError("give --data-preset or --data / --ann, not both")
        sources = preset_sources(args.data_preset, args.data_root)
    else:
        ann, images = args.ann, args.images
        if args.data is not None:
            ann = ann or args.data / "train.json"
            images = images or args.data / "images"
        if ann is None or images is None:
            raise ValueError("give --data DIR (with train.json and images/), --data-preset NAME, or both --ann and "
                             "--images")
        sources = [DataSource(ann, images)]
    try:
        sources += [source_from_folder(folder, exhaustive=False) for folder in args.partial]
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--partial: {err}") from err
    for src in sources:
        if not src.ann_file.is_file():
            raise FileNotFoundError(f"annotation file {src.ann_file} not found (give --data DIR with train.json, "
                                    "or --ann)")
        if not src.images_dir.is_dir():
            raise FileNotFoundError(f"image folder {src.images_dir} not found (give --data DIR with images/, or "
                                    "--images)")
    return sources


def _eval_hook(args: argparse.Namespace):
    """The evaluation callback for ``--eval-every`` (provided by :mod:`tracenet.eval`)."""
    if not args.eval_every:
        return None
    try:
        from tracenet.eval import make_train_eval_hook
    except ImportError as err:
        raise SystemExit(
            "tracenet train: --eval-every needs tracenet.eval.make_train_eval_hook(ann_file, images_dir), "
            f"which this installation does not have ({err})"
        ) from err
    if args.data_preset is not None:
        base = args.data_root / "coco-mini"
    else:
        base = args.data if args.data is not None else (args.ann.parent if args.ann else Path("."))
    return make_train_eval_hook(base / "val.json", base / "images")


def run(args: argparse.Namespace) -> int:
    """Run training from parsed arguments; returns a process exit code."""
    import torch

    from tracenet.train.trainer import NonFiniteLossError, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.export is not None:
        from tracenet.train.export import export_model

        if args.resume is None and args.out is None:
            raise ValueError("--export needs --resume or --out (the run to export)")
        path = export_model(args.resume or args.out, args.export, fp16=args.fp16)
        print(f"tracenet train: exported {path}")
        return 0
    args = complete_from_run(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {
        "seed": args.seed,
        "num_workers": args.num_workers,
        "checkpoint_every": args.checkpoint_every,
        "class_agnostic": args.class_agnostic,
        "amp": args.amp,
    }
    cfg = train_preset(args.preset, **{k: v for k, v in overrides.items() if v is not None})
    if args.batch is not None:
        cfg = cfg.scaled_to_batch(args.batch)
        if args.checkpoint_every is not None:
            cfg.checkpoint_every = args.checkpoint_every
    if args.fp16:
        cfg.export_fp16 = True
    if args.canvas is not None:
        if cfg.augment.resize != "lsj":
            raise ValueError(f"--canvas needs a preset with large-scale jitter, not {args.preset!r}")
        cfg.augment.lsj_size = args.canvas
    if args.copy_paste is not None:
        cfg.augment.copy_paste_prob = args.copy_paste
    if args.model:
        cfg.model = args.model
    if args.backbone_weights:
        cfg.model_overrides = {**cfg.model_overrides, "backbone_weights": args.backbone_weights}
        cfg.model_overrides["pretrained_backbone"] = True
    if args.iters is not None:  # keep the schedule's shape: LR steps scale with the iteration count
        cfg = cfg.with_iters(args.iters)
    if args.lr is not None:
        cfg.lr = args.lr
    sources = _sources(args)
    data_format = "lvis" if args.lvis else "coco" if args.coco else "auto"
    try:
        result = train(
            cfg,
            sources=sources,
            out_dir=args.out,
            data_format=data_format,
            resume=args.resume,
            stop_at=args.stop_at,
            eval_hook=_eval_hook(args),
            eval_every=args.eval_every,
            device=args.device,
            progress=not args.no_progress,
            run_args=run_args_record(args),
        )
    except NonFiniteLossError as err:
        print(f"tracenet train: {err}", file=sys.stderr)
        return 3
    except EvalOnlyDataError as err:
        print(f"tracenet train: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"tracenet train: wrote {result}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracenet.train", description="Train a TraceNet model.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as exc:  # bad input (missing data, bad checkpoint): say so, exit 2, no trace
        print(f"python -m tracenet.train: error: {exc}", file=sys.stderr)
        return 2
