"""Form-field parsing for the app's routes: every bad value becomes an HTTPException saying what to send."""

from __future__ import annotations

import math
import re
from pathlib import Path

from fastapi import HTTPException

from tracenet.app.state import ImageEntry
from tracenet.edit.images import ImageError, ImageTooLargeError, ImageTooSmallError, NotAnImageError

__all__ = ["human_bytes", "image_http_error", "parse_color", "parse_tap", "parse_taps", "safe_stem", "tap_parts"]


def image_http_error(exc: ImageError) -> HTTPException:
    """413 too large, 415 not an image, 422 too small, 400 empty or corrupt."""
    status = {ImageTooLargeError: 413, NotAnImageError: 415, ImageTooSmallError: 422}.get(type(exc), 400)
    return HTTPException(status, str(exc))


def parse_tap(x: float, y: float, entry: ImageEntry) -> tuple[int, int]:
    """Tap ``(x, y)`` in image pixels (fractions floored) -> integer ``(x, y)`` inside ``entry``'s image, or 422."""
    w, h = entry.size
    if not (math.isfinite(x) and math.isfinite(y)):
        raise HTTPException(
            422, f"tap ({x}, {y}) is not a pair of finite numbers; send x and y in image pixels"
        )
    xi, yi = math.floor(x), math.floor(y)
    if not (0 <= xi < w and 0 <= yi < h):
        raise HTTPException(
            422,
            f"tap ({x:g}, {y:g}) is outside the image, which is {w}x{h} pixels; x must be in [0, {w}) and "
            f"y in [0, {h}) (image pixels, x right, y down)",
        )
    return xi, yi


def tap_parts(text: str, max_taps: int) -> list[str]:
    """The ``"x,y"`` parts of ``"x1,y1;x2,y2"``; 422 when there are none or more than ``max_taps`` (checked
    before the image is decoded: each tap is a model run)."""
    parts = [p for p in text.replace(" ", "").split(";") if p]
    if not parts:
        raise HTTPException(422, "give at least one tap, e.g. taps=120,80")
    if len(parts) > max_taps:
        raise HTTPException(422, f"{len(parts)} taps in one request; the limit is {max_taps} (each tap is a model run)")
    return parts


def parse_taps(text: str, entry: ImageEntry, max_taps: int = 16) -> list[tuple[int, int]]:
    """``"x1,y1;x2,y2"`` -> list of ``(x, y)`` taps checked by :func:`parse_tap` (at most ``max_taps``), or 422."""
    taps = []
    for part in tap_parts(text, max_taps):
        try:
            x, y = (float(v) for v in part.split(","))
        except ValueError:
            raise HTTPException(
                422, f"taps must look like 'x1,y1;x2,y2' in image pixels, got {text!r}"
            ) from None
        taps.append(parse_tap(x, y, entry))
    return taps


def parse_color(text: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` or ``"r,g,b"`` -> ``(r, g, b)`` in 0..255, or 422."""
    m = re.fullmatch(r"#?([0-9a-fA-F]{6})", text.strip())
    try:
        rgb = (
            tuple(int(m.group(1)[i : i + 2], 16) for i in (0, 2, 4))
            if m
            else tuple(int(v) for v in text.split(","))
        )
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise HTTPException(422, f"color must be #rrggbb or r,g,b with values 0..255, got {text!r}")
    return rgb  # type: ignore[return-value]


def human_bytes(n: int) -> str:
    """``20971520`` -> ``"20 MB"`` (kB below 1 MB), for error messages."""
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} kB"


def safe_stem(name: str) -> str:
    """A file name's stem reduced to ``[A-Za-z0-9_-]`` (for Content-Disposition headers)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem)[:60] or "image"
