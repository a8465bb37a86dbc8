"""``tracenet edit``: tap a subject, apply a photo edit, write the result.

Examples::

    tracenet edit photo.jpg --tap 320,240 --effect blur --out blurred.png
    tracenet edit photo.jpg --tap 320,240 --tap 400,250 --effect splash --out splash.jpg
    tracenet edit photo.jpg --tap 320,240 --effect replace --color 0,120,255 --out blue.png
    tracenet edit photo.jpg --tap 320,240 --effect replace --background beach.jpg --out beach.png
    tracenet edit photo.jpg --tap 320,240 --effect cutout --out subject.png     # RGBA

Several ``--tap`` select several objects (their masks are united). Taps are image pixels ``X,Y``, x to the
right, y down, in the image as displayed (after EXIF rotation).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tracenet.edit.effects import DEFAULT_FEATHER, EFFECTS, MAX_FEATHER, apply_effect
from tracenet.edit.images import ImageError, load_rgb
from tracenet.io.outputs import check_output, encode_image, write_all

__all__ = ["add_arguments", "parse_color", "parse_tap", "run"]

_ALPHA_FORMATS = {".png", ".webp", ".tif", ".tiff"}


def parse_tap(text: str) -> tuple[int, int]:
    """``"X,Y"`` -> ``(x, y)`` integer image pixels (argparse type). Fractions are floored to the pixel that
    contains the point, as ``TapSegmenter.predict`` and the web app do (``10.7,3.2`` is pixel ``(10, 3)``)."""
    try:
        x, y = (float(v) for v in text.split(","))
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"tap must be X,Y in image pixels (finite numbers), e.g. 120,80; got {text!r}"
        ) from None
    return math.floor(x), math.floor(y)


def parse_color(text: str) -> tuple[int, int, int]:
    """``"R,G,B"`` (0..255) or ``"#rrggbb"`` -> ``(r, g, b)`` (argparse type)."""
    try:
        if text.startswith("#") and len(text) == 7:
            rgb = tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))
        else:
            rgb = tuple(int(v) for v in text.split(","))
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"color must be R,G,B with values 0..255 (e.g. 0,120,255) or #rrggbb; got {text!r}"
        ) from None
    return rgb  # type: ignore[return-value]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``tracenet edit`` options to ``parser``."""
    parser.add_argument("image", type=Path, help="photo to edit (PNG, JPEG, WebP, ...)")
    parser.add_argument(
        "--tap",
        type=parse_tap,
        action="append",
        required=True,
        metavar="X,Y",
        help="tap on the subject in image pixels (x right, y down); repeat to select several objects",
    )
    parser.add_argument("--effect", choices=sorted(EFFECTS), required=True, help="edit to apply")
    back = parser.add_mutually_exclusive_group()
    back.add_argument(
        "--color", type=parse_color, metavar="R,G,B", help="replace: background colour (default white)"
    )
    back.add_argument(
        "--background", type=Path, metavar="IMG", help="replace: background picture (scaled to cover)"
    )
    parser.add_argument(
        "--strength", type=float, default=0.5, help="blur: 0 (none) .. 1 (strong); default 0.5"
    )
    parser.add_argument(
        "--feather",
        type=float,
        default=DEFAULT_FEATHER,
        help=f"edge softness in pixels; default {DEFAULT_FEATHER}",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="OUT.png", help="where to write the result"
    )
    parser.add_argument(
        "--mask-out", type=Path, metavar="MASK.png", help="also write the selection mask (0/255 PNG)"
    )
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the bundled model)")


def _load_segmenter(checkpoint: Path | None) -> Any:
    import tracenet

    return tracenet.load(None if checkpoint is None else str(checkpoint))


def _fail(message: str) -> int:
    print(f"tracenet edit: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace, *, load_segmenter: Callable[[Path | None], Any] | None = None) -> int:
    """Run ``tracenet edit``; returns the process exit code (0 ok, 2 bad input).

    ``load_segmenter(checkpoint)`` builds the segmenter (default ``tracenet.load``); tests pass a stand-in.
    """
    if args.effect != "replace" and (args.color is not None or args.background is not None):
        return _fail(f"--color/--background only apply to --effect replace, not {args.effect}")
    if args.effect == "cutout" and args.out.suffix.lower() not in _ALPHA_FORMATS:
        return _fail(f"cutout has a transparent background; write it as .png or .webp, not {args.out.name}")
    if not 0.0 <= args.strength <= 1.0:
        return _fail(f"--strength must be in [0, 1], got {args.strength}")
    if not 0 <= args.feather <= MAX_FEATHER:
        return _fail(f"--feather must be in [0, {MAX_FEATHER:g}] pixels, got {args.feather}")
    try:  # every output is checked before any work; nothing is written unless everything succeeds
        check_output(args.out, "--out")
        if args.mask_out is not None:
            check_output(args.mask_out, "--mask-out", {".png", ".bmp", ".tif", ".tiff"})
            if args.mask_out.resolve() == args.out.resolve():
                return _fail(f"--mask-out and --out are the same file ({args.out}); give two names")
    except ValueError as exc:
        return _fail(str(exc))
    try:
        image = load_rgb(args.image)
        background = None if args.background is None else load_rgb(args.background)
    except (ImageError, FileNotFoundError) as exc:
        return _fail(str(exc))
    h, w = image.shape[:2]
    for x, y in args.tap:
        if not (0 <= x < w and 0 <= y < h):
            return _fail(
                f"tap ({x}, {y}) is outside {args.image.name}, which is {w}x{h}; x must be in [0, {w}) and "
                f"y in [0, {h})"
            )

    seg = (load_segmenter or _load_segmenter)(args.checkpoint)
    seg.set_image(image)
    mask = np.zeros((h, w), dtype=bool)
    for x, y in args.tap:
        t0 = time.perf_counter()
        res = seg.predict((x, y))
        ms = (time.perf_counter() - t0) * 1e3
        tap_mask = np.asarray(res.mask, dtype=bool)
        mask |= tap_mask
        print(f"tap ({x}, {y}): score {float(res.score):.3f}, {int(tap_mask.sum())} px, {ms:.0f} ms")
    if not mask.any():
        return _fail("the model found no object at the tap(s); tap on the subject itself")

    options: dict[str, Any] = {"feather": args.feather}
    if args.effect == "blur":
        options["strength"] = args.strength
    elif args.effect == "replace":
        options.update(color=args.color, background=background)
    result = apply_effect(args.effect, image, mask, **options)

    files = [(args.out, encode_image(result, args.out.suffix))]
    if args.mask_out is not None:
        files.append((args.mask_out, encode_image(mask, args.mask_out.suffix)))
    try:
        write_all(files)
    except OSError as exc:  # a disk error mid-way: nothing was renamed into place
        return _fail(str(exc))
    print(f"wrote {args.out} ({args.effect}, {w}x{h})")
    return 0
