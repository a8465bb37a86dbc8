"""Folder benchmarks (GrabCut, Berkeley, DAVIS, your own photos): ``IMAGES/<stem>.(jpg|jpeg|png)`` with
``MASKS/<stem>.png``, one object per mask.

What a mask must be (checked for every file before anything is evaluated, so a bad file stops the run at once):

- a PNG (lossless; a JPEG "mask" has blurred values and is refused), 8-bit single-channel (PIL mode ``L``);
- values only 0 (background), 128 (unknown: left out of every IoU, GrabCut's boundary band) and 255 (object),
  at least one 255 pixel; any other value is refused with the values found (a 0/1 mask is not guessed at);
- the same width and height as its image.

Every image needs its mask and every mask its image (same stem, case-sensitive); two images with one stem (e.g.
``a.jpg`` and ``a.png``) are ambiguous and refused. Other files (hidden files, notes) are ignored. Errors are
:class:`BenchmarkError` (a ValueError) naming the file; ``tracenet eval`` turns them into exit code 2.

Images are sorted by stem; image ``k`` (1-based) gets ``image_id = ann_id = k``, its stem is the category-free
name in the per-object rows (``file``), and all objects share the category ``object``. Image pixels are read as
stored (no EXIF rotation), as the masks are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tracenet.eval.records import Benchmark, ImageRecord, InstanceRecord

__all__ = [
    "IGNORE_VALUE",
    "IMAGE_SUFFIXES",
    "OBJECT_VALUE",
    "BenchmarkError",
    "load_folder_benchmark",
    "read_mask",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
OBJECT_VALUE, IGNORE_VALUE = 255, 128
_ALLOWED = np.array([0, IGNORE_VALUE, OBJECT_VALUE])
_LOSSY_MASK_SUFFIXES = (".jpg", ".jpeg")


class BenchmarkError(ValueError):
    """A benchmark folder or file that cannot be evaluated; the message names the file and what to do."""


def read_mask(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(object, ignore)``: two ``H x W`` bool arrays from a 0/128/255 mask PNG (module docstring), or
    :class:`BenchmarkError` naming ``path``."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im) if mode == "L" else None
    except (UnidentifiedImageError, OSError) as exc:
        raise BenchmarkError(f"mask {path}: not a readable image ({exc})") from None
    if arr is None:
        raise BenchmarkError(
            f"mask {path}: PIL mode {mode!r}; need an 8-bit single-channel (mode 'L') PNG with 0 = background, "
            "128 = unknown, 255 = object"
        )
    bad = np.setdiff1d(np.unique(arr), _ALLOWED)
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:8].tolist()) + (", ..." if bad.size > 8 else "")
        raise BenchmarkError(
            f"mask {path}: values {shown} are not allowed; need only 0 (background), 128 (unknown, left out of "
            "IoU) and 255 (object)"
        )
    obj = arr == OBJECT_VALUE
    if not obj.any():
        raise BenchmarkError(f"mask {path}: no object pixel (255); every mask must hold one object")
    return obj, arr == IGNORE_VALUE


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise BenchmarkError(f"image {path}: not a readable image ({exc})") from None


def _files_by_stem(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in suffixes:
            continue
        if path.stem in found:
            raise BenchmarkError(
                f"{what} {found[path.stem].name} and {path.name} in {folder} share the stem {path.stem!r}; "
                "keep one"
            )
        found[path.stem] = path
    return found


def _load_rgb(path: Path) -> np.ndarray:
    from tracenet.eval.evaluate import load_rgb

    return load_rgb(path)


def _instances(mask_path: Path, ann_id: int, category: str) -> list[InstanceRecord]:
    obj, ignore = read_mask(mask_path)
    return [
        InstanceRecord(
            ann_id=ann_id,
            category=category,
            area=float(np.count_nonzero(obj)),
            gt=obj,
            ignore=ignore if ignore.any() else None,
        )
    ]


def load_folder_benchmark(
    images_dir: str | Path, masks_dir: str | Path, *, category: str = "object"
) -> Benchmark:
    """Check and index a folder benchmark (rules in the module docstring): every mask is read and every image
    header opened now, so errors come before any evaluation. Raises :class:`BenchmarkError` or
    FileNotFoundError (a folder that does not exist)."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder, what in ((images_dir, "--images"), (masks_dir, "--masks")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder not found: {folder}")
    images = _files_by_stem(images_dir, IMAGE_SUFFIXES, "images")
    masks = _files_by_stem(masks_dir, (".png", *_LOSSY_MASK_SUFFIXES), "masks")
    if not images:
        raise BenchmarkError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}")
    if not masks:
        raise BenchmarkError(f"no mask PNGs in {masks_dir}")
    lossy = [path for path in masks.values() if path.suffix.lower() in _LOSSY_MASK_SUFFIXES]
    if lossy:
        raise BenchmarkError(f"mask {lossy[0]}: JPEG masks are lossy (values blur); save it as PNG")
    no_mask = sorted(images.keys() - masks.keys())
    if no_mask:
        raise BenchmarkError(f"image {images[no_mask[0]]} has no mask {masks_dir / no_mask[0]}.png")
    no_image = sorted(masks.keys() - images.keys())
    if no_image:
        raise BenchmarkError(
            f"mask {masks[no_image[0]]} has no image {images_dir / no_image[0]}.(jpg|jpeg|png)"
        )
    records = []
    for k, stem in enumerate(sorted(images), start=1):
        image_path, mask_path = images[stem], masks[stem]
        obj, _ = read_mask(mask_path)
        w, h = _image_size(image_path)
        if obj.shape != (h, w):
            raise BenchmarkError(
                f"mask {mask_path} is {obj.shape[1]}x{obj.shape[0]} (W x H) but its image {image_path} is {w}x{h}"
            )
        records.append(
            ImageRecord(
                image_id=k,
                file=image_path.name,
                load=lambda p=image_path: _load_rgb(p),
                instances=lambda p=mask_path, a=k: _instances(p, a, category),
            )
        )
    return Benchmark(kind="folder", dataset=str(masks_dir), images_dir=str(images_dir), images=records)
