"""``tracenet eval``: evaluate a method on a COCO JSON or a folder benchmark and write ``metrics.json``,
``report.md`` and plots.

    tracenet eval --ann VAL.json [--images DIR] ... --out OUT          # COCO / LVIS-style JSON
    tracenet eval --images DIR --masks DIR ... --out OUT               # GrabCut / Berkeley / DAVIS layout
    tracenet eval ... --shard 2/4 --out OUT/shard2                     # every 4th image from the 2nd; then
    python -m tracenet.eval.merge OUT/shard1 ... OUT/shard4 --out OUT  # = the single run's numbers

Wiring into a CLI::

    parser = subparsers.add_parser("eval", help="mIoU-T / mTA evaluation")
    add_arguments(parser)
    ...
    return run(args)

Standalone: ``python -m tracenet.eval --method grabcut --ann VAL.json --images DIR --out OUT``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["add_arguments", "run", "summary_line"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` options to ``parser``."""
    from tracenet.eval.methods import METHOD_NAMES

    parser.add_argument(
        "--ann", default=None, help="COCO instances JSON (e.g. ../shared/data/coco-mini/val.json)"
    )
    parser.add_argument(
        "--masks",
        default=None,
        help="folder benchmark instead of --ann: one mask PNG per image, <stem>.png, uint8 0 = background, "
        "128 = unknown (left out of IoU), 255 = object (e.g. ../shared/data/interactive/GrabCut/masks)",
    )
    parser.add_argument(
        "--images",
        default=None,
        help="image folder: the JSON's file_name entries, or <stem>.jpg|jpeg|png for --masks (default: an "
        "images/ folder next to --ann or --masks)",
    )
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="evaluate only every N-th image from the I-th (1-based), e.g. 2/4; combine the shard folders with "
        "python -m tracenet.eval.merge (identical numbers to one run)",
    )
    parser.add_argument(
        "--method", default="tracenet", choices=METHOD_NAMES, help="what to evaluate (default tracenet)"
    )
    parser.add_argument("--checkpoint", default=None, help="TraceNet checkpoint (default: the bundled model)")
    parser.add_argument(
        "--selection",
        choices=["auto", "paper", "ranker"],
        default=None,
        help="which candidate a tap takes: paper = NMS top-1 of cls*ctr, ranker = the checkpoint's tap ranker, "
        "auto (default) = the ranker when the checkpoint has one",
    )
    parser.add_argument(
        "--refine",
        choices=["none", "guided", "grabcut"],
        default=None,
        help="boundary refinement of TraceNet's masks (tracenet.refine; default: none, the network's own masks, "
        "although tracenet.load() refines with grabcut by default)",
    )
    parser.add_argument(
        "--zoom",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="segment small objects again on an enlarged crop around the first answer (tracenet.tap.zoom; "
        "default: off, the single pass)",
    )
    parser.add_argument("--out", required=True, help="output folder for metrics.json, report.md, plots")
    parser.add_argument("--beta", type=float, default=0.7, help="IoU threshold of mTA (default 0.7)")
    parser.add_argument("--seed", type=int, default=0, help="tap sampling seed (default 0)")
    parser.add_argument("--max-images", type=int, default=None, help="only the first N images (by id)")
    parser.add_argument("--max-instances", type=int, default=None, help="stop after N instances")
    parser.add_argument(
        "--mta-stride",
        type=int,
        default=None,
        metavar="S",
        help="tap only pixels on an S-pixel grid for mTA (approximate, flagged in the output); 1 = every pixel "
        "(exact); 0 = skip mTA. Default: exact for methods that group taps (tracenet, fullnet), 16 for "
        "grabcut and methods without a group key",
    )
    parser.add_argument(
        "--check-group-key",
        type=int,
        default=2,
        metavar="N",
        help="per image, predict N pixel pairs that share a group key and check the masks are identical "
        "(mismatches are counted in metrics.json; 0 = no check; default 2)",
    )
    parser.add_argument(
        "--showcase", type=int, default=4, help="instances in the qualitative / clickable plots"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _check_counts(args: argparse.Namespace) -> str | None:
    for flag, value, low in (("--max-images", args.max_images, 1), ("--max-instances", args.max_instances, 1),
                             ("--showcase", args.showcase, 0), ("--check-group-key", args.check_group_key, 0)):
        if value is not None and value < low:
            return f"{flag} must be >= {low}, got {value}"
    return None


def _check_out(out: Path) -> str | None:
    """Why ``out`` cannot become the output folder (checked before the run, so a long run never fails at the end)."""
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file; give a folder for metrics.json, report.md and the plots"
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"--out {out}: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {out}: the folder {parent} is not writable"
    return None


def run(args: argparse.Namespace) -> int:
    """Run the evaluation described by ``args``; 0 on success, 2 on a user error (message on stderr)."""
    from tracenet.eval.evaluate import EvalConfig, evaluate, load_coco_benchmark, resolve_stride
    from tracenet.eval.folder import load_folder_benchmark
    from tracenet.eval.methods import make_method
    from tracenet.eval.records import parse_shard
    from tracenet.eval.report import write_outputs

    if (args.ann is None) == (args.masks is None):
        print(
            "error: give either --ann JSON (COCO) or --masks DIR (folder benchmark), not both",
            file=sys.stderr,
        )
        return 2
    source = Path(args.ann or args.masks)
    images = Path(args.images) if args.images else source.parent / "images"
    if not 0 < args.beta <= 1:
        print(f"error: --beta must be in (0, 1], got {args.beta}", file=sys.stderr)
        return 2
    source_flag = "--ann file" if args.ann else "--masks folder"
    for path, what in ((source, source_flag), (images, "--images folder")):
        if not path.exists():
            print(f"error: {what} not found: {path}", file=sys.stderr)
            return 2
    problem = _check_counts(args) or _check_out(Path(args.out))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        shard = None if args.shard is None else parse_shard(args.shard)
        if args.ann:
            benchmark = load_coco_benchmark(source, images)
        else:
            benchmark = load_folder_benchmark(images, source)
        load_kwargs = {} if args.selection is None else {"selection": args.selection}
        if args.refine is not None:
            load_kwargs["refine"] = args.refine
        if args.zoom is not None:
            load_kwargs["zoom"] = args.zoom
        method = make_method(args.method, args.checkpoint, **load_kwargs)
        stride = resolve_stride(method, args.mta_stride)
        if stride is not None and stride > 1:
            print(
                f"note: mTA is approximate: pixels sampled on a {stride}-pixel grid (use --mta-stride 1 for exact)",
                file=sys.stderr,
            )
        config = EvalConfig(
            beta=args.beta,
            seed=args.seed,
            max_images=args.max_images,
            max_instances=args.max_instances,
            mta_stride=args.mta_stride,
            n_showcase=args.showcase,
            check_group_key=args.check_group_key,
            progress=not args.quiet,
            shard=shard,
        )
        result = evaluate(method, benchmark, config)
    except ImportError as exc:
        print(f"error: method {args.method!r} is not available here: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = write_outputs(result, args.out, plots=not args.no_plots)
    m = result.metrics
    print(summary_line(m) + f" -> {path}")
    return 0


def summary_line(m: dict) -> str:
    """One line of a ``metrics.json`` dict's headline numbers (printed by ``tracenet eval`` and the merge)."""
    from tracenet.eval.report import fmt

    approx = " (approximate)" if m["approximate"]["mta"] else ""
    share = m.get("first_click_share", {})
    return (
        f"{m['method']}: mIoU-T {fmt(m['miou_t'])}, mTA {fmt(m['mta'])}{approx}, first-click IoU "
        f"{fmt(m['first_click_iou'])} (>= 0.85: {fmt(share.get('0.85'))}, >= 0.90: {fmt(share.get('0.90'))}) "
        f"on {m['n_instances']} instances / {m['n_images']} images in {m['seconds']:.1f} s"
    )
