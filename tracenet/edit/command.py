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
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tracenet.edit.effects import DEFAULT_FEATHER, EFFECTS, apply_effect
from tracenet.edit.images import ImageError, load_rgb

__all__ = ["add_arguments", "parse_color", "parse_tap", "run"]

_ALPHA_FORMATS = {".png", ".webp", ".tif", ".tiff"}


def parse_tap(text: str) -> tuple[int, int]:
    """``"X,Y"`` -> ``(x, y)`` integer image pixels (argparse type)."""
    try:
        x, y = (int(round(float(v))) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"tap must be X,Y in image pixels, e.g. 120,80; got {text!r}"
        ) from None
    return x, y


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
    if args.feather < 0:
        return _fail(f"--feather must be >= 0 pixels, got {args.feather}")
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

    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(result).save(args.out)
        if args.mask_out is not None:
            args.mask_out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(args.mask_out)
    except (ValueError, OSError) as exc:  # unknown extension, unwritable folder
        return _fail(f"could not write {args.out}: {exc}; use an .png or .jpg file name in a writable folder")
    print(f"wrote {args.out} ({args.effect}, {w}x{h})")
    return 0
