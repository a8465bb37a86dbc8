"""Mask encodings returned by ``POST /api/segment``: PNG (base64), polygons and COCO RLE."""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np

from tracenet.edit.images import encode_png

__all__ = ["MASK_FORMATS", "encode_mask", "mask_to_polygons", "mask_to_rle", "parse_formats"]

MASK_FORMATS = ("png", "polygon", "rle")
"""Values accepted by the ``format`` parameter (comma-separated, or ``all``)."""


def parse_formats(text: str) -> list[str]:
    """``"png,rle"`` / ``"all"`` -> list of formats; a ValueError names the bad value and the valid ones."""
    parts = [p.strip().lower() for p in text.split(",") if p.strip()]
    if parts == ["all"]:
        return list(MASK_FORMATS)
    bad = [p for p in parts if p not in MASK_FORMATS]
    if bad or not parts:
        raise ValueError(
            f"format {text!r} is not understood; use one or more of {', '.join(MASK_FORMATS)} separated by commas, "
            "or all"
        )
    return list(dict.fromkeys(parts))


def mask_to_polygons(mask: np.ndarray, *, min_area: float = 1.0) -> list[list[list[int]]]:
    """Outer contours of an ``H x W`` bool mask (``cv2.findContours``, external, simple chain).

    Returns:
        One polygon per connected part, largest area first; each polygon is a list of ``[x, y]`` pixel
        coordinates. Parts smaller than ``min_area`` pixels of contour area are dropped, but a tiny mask
        still yields its single largest polygon.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    ranked = sorted(contours, key=cv2.contourArea, reverse=True)
    kept = [c for c in ranked if cv2.contourArea(c) >= min_area] or ranked[:1]
    return [c.reshape(-1, 2).astype(int).tolist() for c in kept]


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO run-length encoding of an ``H x W`` bool mask: ``{"size": [H, W], "counts": str}``."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def encode_mask(mask: np.ndarray, formats: list[str]) -> dict[str, Any]:
    """The JSON fields for ``formats``: ``mask_png`` (base64 of an 8-bit 0/255 PNG), ``polygons``, ``rle``."""
    out: dict[str, Any] = {}
    if "png" in formats:
        out["mask_png"] = base64.b64encode(encode_png(mask)).decode("ascii")
    if "polygon" in formats:
        out["polygons"] = mask_to_polygons(mask)
    if "rle" in formats:
        out["rle"] = mask_to_rle(mask)
    return out
