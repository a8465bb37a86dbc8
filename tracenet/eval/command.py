"""``tracenet eval``: evaluate a method on a COCO JSON and write ``metrics.json``, ``report.md`` and plots.

Wiring into a CLI::

    parser = subparsers.add_parser("eval", help="mIoU-T / mTA evaluation")
    add_arguments(parser)
    ...
    return run(args)

Standalone: ``python -m tracenet.eval --method grabcut --ann VAL.json --images DIR --out OUT``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` options to ``parser``."""
    from tracenet.eval.methods import METHOD_NAMES

    parser.add_argument(
        "--ann", required=True, help="COCO instances JSON (e.g. ../shared/data/coco-mini/val.json)"
    )
    parser.add_argument(
        "--images",
        default=None,
        help="folder of the JSON's file_name entries (default: an images/ folder next to --ann)",
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
        help="boundary refinement of TraceNet's masks (tracenet.refine; default: none)",
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


def run(args: argparse.Namespace) -> int:
    """Run the evaluation described by ``args``; 0 on success, 2 on a user error (message on stderr)."""
    from tracenet.eval.evaluate import EvalConfig, evaluate_coco, resolve_stride
    from tracenet.eval.methods import make_method
    from tracenet.eval.report import fmt, write_outputs

    ann = Path(args.ann)
    images = Path(args.images) if args.images else ann.parent / "images"
    if not 0 < args.beta <= 1:
        print(f"error: --beta must be in (0, 1], got {args.beta}", file=sys.stderr)
        return 2
    for path, what in ((ann, "--ann file"), (images, "--images folder")):
        if not path.exists():
            print(f"error: {what} not found: {path}", file=sys.stderr)
            return 2
    try:
        load_kwargs = {} if args.selection is None else {"selection": args.selection}
        if args.refine is not None:
            load_kwargs["refine"] = args.refine
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
        )
        result = evaluate_coco(method, ann, images, config)
    except ImportError as exc:
        print(f"error: method {args.method!r} is not available here: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = write_outputs(result, args.out, plots=not args.no_plots)
    m = result.metrics
    approx = " (approximate)" if m["approximate"]["mta"] else ""
    print(
        f"{m['method']}: mIoU-T {fmt(m['miou_t'])}, mTA {fmt(m['mta'])}{approx}, first-click IoU "
        f"{fmt(m['first_click_iou'])} on {m['n_instances']} instances / {m['n_images']} images "
        f"in {m['seconds']:.1f} s -> {path}"
    )
    return 0
