"""``tracenet`` command line: segment, edit, eval, bench, train, app.

    tracenet segment IMAGE --tap X,Y [--tap X,Y ...] --out MASK.png [--overlay OUT.jpg]

Each subcommand lives with its layer (``tracenet/<layer>/command.py``: ``add_arguments`` + ``run``) and is
imported only when used, so ``tracenet segment`` starts without loading the training or web code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from tracenet.edit.command import parse_tap

SUBCOMMANDS = {
    "edit": ("tracenet.edit.command", "tap a subject and edit the photo (blur / replace / splash / cutout)"),
    "eval": ("tracenet.eval.command", "evaluate a method with the paper's tap protocol (mIoU-T, mTA)"),
    "bench": ("tracenet.bench.command", "efficiency table: parameters, MACs, latency (TraceNet vs FullNet ...)"),
    "train": ("tracenet.train.command", "train a TraceNet model on COCO / LVIS"),
    "app": ("tracenet.app.command", "start the local tap-to-segment web app"),
    "export": ("tracenet.deploy.command", "export a model for onnxruntime (encoder.onnx, decoder.onnx, model.json)"),
}
MASK_COLORS = [(255, 64, 64), (64, 160, 255), (64, 220, 96), (255, 200, 0), (200, 64, 255), (0, 220, 220)]


def add_segment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="photo to segment (any common format; EXIF rotation applied)")
    parser.add_argument("--tap", dest="taps", type=parse_tap, action="append", required=True, metavar="X,Y",
                        help="tap in image pixels (x to the right, y down); repeat for several objects")
    parser.add_argument("--out", type=Path, required=True, help="mask PNG to write (union of the tapped objects)")
    parser.add_argument("--overlay", type=Path, help="also write the photo with the masks drawn on it (JPEG/PNG)")
    parser.add_argument("--checkpoint", type=Path, help="tracenet .safetensors checkpoint, or with --engine onnx an "
                        "export folder (default: the bundled model)")
    parser.add_argument("--engine", choices=["torch", "onnx"], default="torch",
                        help="torch (default) or onnx: onnxruntime on an export folder (tracenet export)")
    parser.add_argument("--fullnet", action="store_true", help="run the whole network (no tracer), for comparison")
    parser.add_argument("--mask-region", choices=["image", "box"], default="image",
                        help="run the mask branch over the whole image (paper) or only the predicted box")
    parser.add_argument("--min-score", type=float, default=None, help="'nothing here' below this score")
    parser.add_argument("--selection", choices=["auto", "paper", "ranker"], default="auto",
                        help="candidate choice: paper = NMS top-1 (the paper's rule), ranker = the model's tap "
                        "ranker; auto (default) = the ranker when the checkpoint has one")
    parser.add_argument("--refine", choices=["none", "guided", "grabcut"], default=None,
                        help="snap the mask to the photo's edges: guided filter or GrabCut on a crop around it "
                        "(default: tracenet.load()'s, grabcut)")
    parser.add_argument("--zoom", action=argparse.BooleanOptionalAction, default=None,
                        help="segment small objects again on an enlarged crop around the first answer "
                        "(default: tracenet.load()'s)")
    parser.add_argument("--json", action="store_true", help="print one JSON line per tap instead of text")


def run_segment(args: argparse.Namespace) -> int:
    import numpy as np

    import tracenet
    from tracenet.io.outputs import check_output, encode_image, write_all

    # every output is checked before any work, and written only when every tap has succeeded
    check_output(args.out, "--out", {".png"})
    if args.overlay is not None:
        check_output(args.overlay, "--overlay")
        if args.overlay.resolve() == args.out.resolve():
            raise ValueError(f"--overlay and --out are the same file ({args.out}); give two names")
    if args.min_score is not None and not 0 <= args.min_score <= 1:
        raise ValueError(f"--min-score must be a number in [0, 1], got {args.min_score}")
    kwargs = {"selection": args.selection}
    if args.engine == "torch":
        kwargs["mask_region"] = args.mask_region
    elif args.mask_region != "image" or args.fullnet:
        raise ValueError("--engine onnx runs the paper's image-wide mask through its decoder; "
                         "--mask-region box and --fullnet are for --engine torch")
    if args.min_score is not None:
        kwargs["min_score"] = args.min_score
    if args.refine is not None:
        kwargs["refine"] = args.refine
    if args.zoom is not None:
        kwargs["zoom"] = args.zoom
    seg = tracenet.load(str(args.checkpoint) if args.checkpoint else None, engine=args.engine, **kwargs)
    seg.set_image(args.image)
    union = np.zeros(seg.image_hw, dtype=bool)
    shown = seg.image
    for i, tap in enumerate(args.taps):
        res = seg.predict(tap, use_rft=not args.fullnet)
        union |= res.mask
        if res.found and args.overlay:
            shown = _overlay(shown, res.mask, MASK_COLORS[i % len(MASK_COLORS)])
        _report(tap, res, args.json)
    files = [(args.out, encode_image(union, ".png"))]
    if args.overlay:
        quality = {"quality": 92} if args.overlay.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
        files.append((args.overlay, encode_image(shown, args.overlay.suffix, **quality)))
    write_all(files)
    if not args.json:
        print(f"wrote {args.out} ({int(union.sum())} mask pixels)" + (f" and {args.overlay}" if args.overlay else ""))
    return 0


def _overlay(image, mask, color):
    from tracenet.io import overlay

    return overlay(image, mask, color=color, alpha=0.5, outline=True)


def _report(tap, res, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"tap": list(tap), "found": res.found, "score": round(res.score, 4),
                          "box": [round(v, 1) for v in res.box], "class": res.class_name, "level": res.level,
                          "mask_pixels": int(res.mask.sum()), "latency_ms": round(res.latency_ms, 1),
                          "macs": res.macs, "full_macs": res.full_macs, "reason": res.reason,
                          "zoom_window": list(res.extras["zoom_window"]) if "zoom_window" in res.extras else None}))
        return
    if not res.found:
        print(f"tap {tap}: {res.reason}")
        return
    x0, y0, x1, y1 = res.box
    work = f"{res.macs / 1e9:.2f} of {res.full_macs / 1e9:.2f} GMACs" if res.full_macs else ""
    if "zoom_window" in res.extras:
        work += ", zoomed in on ({}, {}, {}, {})".format(*res.extras["zoom_window"])
    print(f"tap {tap}: {res.class_name} score {res.score:.3f}, box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}), "
          f"{int(res.mask.sum())} px, P{res.level}, {res.latency_ms:.0f} ms, {work}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracenet", description="One-tap instance segmentation (TraceNet).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    seg = sub.add_parser("segment", help="segment the object under a tap; write its mask",
                         description="Segment the object under each tap and write the mask (and an overlay).")
    add_segment_arguments(seg)
    seg.set_defaults(run=run_segment)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(module=module)
        _LAZY[name] = p
    return parser


_LAZY: dict[str, argparse.ArgumentParser] = {}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # subcommands other than segment register their arguments only when chosen (imports stay lazy)
    if argv and argv[0] in _LAZY:
        module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
        module.add_arguments(_LAZY[argv[0]])
        _LAZY[argv[0]].set_defaults(run=module.run)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, RuntimeError) as exc:  # bad image, bad tap, bad checkpoint: say so, no trace
        print(f"tracenet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
