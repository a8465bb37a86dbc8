"""Tiny generated COCO / LVIS datasets (PIL images of coloured rectangles and ellipses) for the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (240, 200, 30), (200, 60, 220)]


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def make_shapes_dataset(
    root: Path,
    *,
    n_images: int = 8,
    size: int = 64,
    seed: int = 0,
    lvis: bool = False,
    crowd: bool = True,
) -> tuple[Path, Path]:
    """Write ``root/images/*.png`` and ``root/train.json``; return ``(json_path, images_dir)``.

    Each image has 1-3 objects on a noisy grey background: rectangles (category 1, polygon annotation) and
    ellipses (category 3, compressed-RLE annotation). Category 2 exists but is unused (tests the contiguous
    class map). With ``crowd`` (COCO only), image 0 gets an extra crowd region (uncompressed RLE) in its
    bottom-right corner. LVIS: no ``iscrowd``, images named by ``coco_url`` only, categories with
    ``synset``/``frequency``.
    """
    rng = np.random.default_rng(seed)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        img = Image.fromarray(rng.integers(100, 140, (size, size, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            w, h = (int(v) for v in rng.integers(size // 4, size // 2 + 1, 2))
            x0, y0 = (int(v) for v in rng.integers(0, size - max(w, h), 2))
            colour = COLOURS[int(rng.integers(len(COLOURS)))]
            if rng.random() < 0.5:
                draw.rectangle([x0, y0, x0 + w - 1, y0 + h - 1], fill=colour)
                seg = [[x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]]
                cat = 1
            else:
                m = Image.new("L", (size, size), 0)
                ImageDraw.Draw(m).ellipse([x0, y0, x0 + w - 1, y0 + h - 1], fill=1)
                draw.bitmap((0, 0), m.point(lambda v: 255 * v).convert("1"), fill=colour)
                seg = _rle(np.array(m, dtype=bool))
                cat = 3
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cat,
                    "segmentation": seg,
                    "bbox": [x0, y0, w, h],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
        if crowd and not lvis and i == 0:
            m = np.zeros((size, size), dtype=bool)
            m[size - 12 :, size - 12 :] = True
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 1,
                    "category_id": 1,
                    "segmentation": _uncompressed_rle(m),
                    "bbox": [size - 12, size - 12, 12, 12],
                    "area": 144.0,
                    "iscrowd": 1,
                }
            )
        name = f"{i + 1:012d}.png"
        img.save(images_dir / name)
        rec = {"id": i + 1, "height": size, "width": size}
        if lvis:
            rec.update(
                coco_url=f"http://images.cocodataset.org/train2017/{name}",
                not_exhaustive_category_ids=[],
                neg_category_ids=[],
            )
        else:
            rec["file_name"] = name
        images.append(rec)
    cats = [{"id": c, "name": n} for c, n in ((1, "rectangle"), (2, "unused"), (3, "ellipse"))]
    if lvis:
        for a in anns:
            a.pop("iscrowd")
        for c in cats:
            c.update(synset=f"{c['name']}.n.01", frequency="f", image_count=1, instance_count=1)
    path = root / "train.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path, images_dir
