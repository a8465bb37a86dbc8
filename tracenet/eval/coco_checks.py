"""Validate a COCO instances JSON before pycocotools sees it.

pycocotools trusts its input: a polygon coordinate of 1e30 crashes the process (exit 139), 1e9 allocates tens of
gigabytes, an RLE whose counts sum past ``height * width`` writes past its buffer, and ``[]`` / ``null`` / a string
segmentation give tracebacks. :func:`load_checked_coco` reads the file, checks every field the evaluator uses
and returns a ``pycocotools.coco.COCO`` built from the checked data, or raises ``ValueError`` naming the file, the
annotation or image id and what is wrong.

What is checked: the top level is an object with ``images`` and ``annotations`` lists; an image has an int ``id``
(unique), a relative ``file_name`` that stays inside the image folder, and int ``height`` / ``width`` with at most
:data:`MAX_IMAGE_PIXELS` pixels; an annotation has int ``id``, ``image_id`` (of a listed image) and
``category_id``, an optional finite ``area`` >= 0, an optional ``iscrowd`` of 0 / 1, and a ``segmentation`` that
is either a non-empty list of polygons (each an even number >= 6 of finite coordinates within the image, give or
take :data:`POLYGON_MARGIN` pixels) or an RLE ``{"size": [height, width], "counts": ...}`` whose counts (a list
of ints, or COCO's compressed string) are >= 0 and sum to ``height * width``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from functools import lru_cache
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

__all__ = ["MAX_IMAGE_PIXELS", "POLYGON_MARGIN", "check_coco", "load_checked_coco", "rle_string_counts"]

MAX_IMAGE_PIXELS = 200_000_000
"""Largest ``height * width`` an annotation file may declare for one image."""

POLYGON_MARGIN = 1.0
"""How far outside ``[0, width] x [0, height]`` a polygon coordinate may lie, in pixels."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rle_string_counts(text: str) -> list[int]:
    """The run lengths of a COCO compressed RLE string (pycocotools' ``rleFrString``, in Python), or ValueError."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise ValueError("compressed RLE counts end in the middle of a number")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"compressed RLE counts contain the character {text[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
            if k > 13:
                raise ValueError("compressed RLE counts hold a number too large for any image")
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _check_rle(seg: dict, h: int, w: int) -> str | None:
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
        return f"RLE size must be [height, width] ints, got {size!r}"
    if size != [h, w]:
        return f"RLE size {size} does not match the image's [height, width] = {[h, w]}"
    if isinstance(counts, str):
        try:
            runs = rle_string_counts(counts)
        except ValueError as err:
            return str(err)
    elif isinstance(counts, list) and all(_is_int(v) for v in counts):
        runs = counts
    else:
        return "RLE counts must be a list of ints or a COCO compressed string"
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        return f"RLE counts must be >= 0 and sum to height * width = {h * w}, they sum to {sum(runs)}"
    return None


def _check_polygons(seg: list, h: int, w: int) -> str | None:
    if not seg:
        return "segmentation is an empty list (no polygon)"
    for k, poly in enumerate(seg):
        if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
            return f"polygon {k} must be a list of finite numbers [x0, y0, x1, y1, ...]"
        if len(poly) < 6 or len(poly) % 2:
            return f"polygon {k} has {len(poly)} numbers; a polygon needs an even number, at least 6 (3 points)"
        xs, ys = poly[0::2], poly[1::2]
        m = POLYGON_MARGIN
        if min(xs) < -m or max(xs) > w + m or min(ys) < -m or max(ys) > h + m:
            return (f"polygon {k} has points outside the {w}x{h} image (x in [{min(xs):g}, {max(xs):g}], "
                    f"y in [{min(ys):g}, {max(ys):g}])")
    return None


def _check_image(img: Any, images_dir: Path | None) -> str | None:
    if not isinstance(img, dict) or not _is_int(img.get("id")):
        return "must be an object with an int 'id'"
    h, w = img.get("height"), img.get("width")
    if not (_is_int(h) and _is_int(w) and h > 0 and w > 0 and h * w <= MAX_IMAGE_PIXELS):
        return f"height and width must be positive ints, at most {MAX_IMAGE_PIXELS:,} pixels together; got {h}, {w}"
    name = img.get("file_name")
    if not isinstance(name, str) or not name:
        return "needs a file_name string"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or ".." in Path(name).parts:
        return f"file_name {name!r} must be a path relative to the image folder, without '..'"
    if images_dir is not None and not (images_dir / name).resolve().is_relative_to(images_dir.resolve()):
        return f"file_name {name!r} leads outside the image folder {images_dir} (a symbolic link?)"
    return None


def check_coco(data: Any, images_dir: Path | None = None) -> None:
    """Raise ``ValueError`` at the first field of the COCO dict ``data`` the evaluator cannot use safely."""
    if not isinstance(data, dict):
        raise ValueError(f"the top level must be a JSON object with 'images' and 'annotations', got "
                         f"{type(data).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"'{key}' must be a list, got {type(data.get(key)).__name__}")
    if not isinstance(data.get("categories", []), list):
        raise ValueError("'categories' must be a list")
    sizes: dict[int, tuple[int, int]] = {}
    for i, img in enumerate(data["images"]):
        problem = _check_image(img, images_dir)
        if problem is None and img["id"] in sizes:
            problem = "repeats an image id"
        if problem:
            ident = img.get("id") if isinstance(img, dict) else None
            raise ValueError(f"image #{i} (id {ident}): {problem}")
        sizes[img["id"]] = (img["height"], img["width"])
    for i, ann in enumerate(data["annotations"]):
        problem = _check_annotation(ann, sizes)
        if problem:
            ident = ann.get("id") if isinstance(ann, dict) else None
            raise ValueError(f"annotation #{i} (id {ident}): {problem}")


def _check_annotation(ann: Any, sizes: dict[int, tuple[int, int]]) -> str | None:
    if not isinstance(ann, dict):
        return "must be a JSON object"
    for key in ("id", "image_id", "category_id"):
        if not _is_int(ann.get(key)):
            return f"needs an int {key!r}, got {ann.get(key)!r}"
    if ann["image_id"] not in sizes:
        return f"image_id {ann['image_id']} is not in 'images'"
    if "area" in ann and not (_is_number(ann["area"]) and ann["area"] >= 0):
        return f"area must be a finite number >= 0, got {ann['area']!r}"
    if ann.get("iscrowd", 0) not in (0, 1):
        return f"iscrowd must be 0 or 1, got {ann['iscrowd']!r}"
    if "segmentation" not in ann:
        return "has no segmentation"
    seg, (h, w) = ann["segmentation"], sizes[ann["image_id"]]
    if isinstance(seg, list):
        return _check_polygons(seg, h, w)
    if isinstance(seg, dict):
        return _check_rle(seg, h, w)
    return f"segmentation must be a list of polygons or an RLE object, got {type(seg).__name__}"


@lru_cache(maxsize=1)
def _load(path: str, images_dir: str | None, _stamp: tuple[int, int]) -> Any:
    from pycocotools.coco import COCO

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a JSON file: {err}") from None
    try:
        check_coco(data, None if images_dir is None else Path(images_dir))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        coco.createIndex()
    return coco


def load_checked_coco(ann_path: str | Path, images_dir: str | Path | None = None) -> Any:
    """A ``pycocotools.coco.COCO`` of ``ann_path`` after :func:`check_coco` (``images_dir``: where ``file_name``
    must stay). The last file loaded is cached (by path and modification time), so checking it before a run and
    evaluating it afterwards parses it once."""
    path = Path(ann_path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path} (pass a COCO instances JSON with --ann)")
    st = path.stat()
    return _load(str(path.resolve()), None if images_dir is None else str(images_dir), (st.st_mtime_ns, st.st_size))
