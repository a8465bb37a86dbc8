"""What the tap ranker costs per tap: the bundled model with its ranker vs the paper's NMS top-1, side by side.

Both segmenters load the same checkpoint (default: the bundled model) and answer the same taps on the same
photos (the package's example photos, resized to ``--size``); the traced path (TraceNet) is timed. The ranker
computes a mask for every candidate above ``min_score`` (up to 5 for a class-agnostic model) where the paper's
rule computes one. Prints a Markdown table of medians and the ratios.

    python benchmarks/selection_latency.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import tracenet

EXAMPLES = Path(tracenet.__file__).resolve().parent / "examples"


def _photos(size: tuple[int, int]) -> list[np.ndarray]:
    files = sorted(p for p in EXAMPLES.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return [np.asarray(Image.open(p).convert("RGB").resize(size, Image.BILINEAR)) for p in files]


def _taps(w: int, h: int, n: int, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    return [(int(x), int(y)) for x, y in zip(rng.integers(0, w, n), rng.integers(0, h, n))]


def measure(seg, photos: list[np.ndarray], taps_per_photo: int) -> dict[str, float]:
    """Median first-tap and repeat-tap latency (ms) of ``seg`` over ``photos``."""
    seg.set_image(photos[0])  # warm-up: builds the trace plan once per process
    seg.predict((1, 1))
    first, repeat = [], []
    for i, photo in enumerate(photos):
        seg.set_image(photo)
        h, w = photo.shape[:2]
        for k, tap in enumerate(_taps(w, h, taps_per_photo + 1, seed=i)):
            t0 = time.perf_counter()
            seg.predict(tap)
            (first if k == 0 else repeat).append((time.perf_counter() - t0) * 1e3)
    return {"first_ms": statistics.median(first), "repeat_ms": statistics.median(repeat)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="model (default: the bundled one; it must carry a ranker)")
    p.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of the photos (default 1024x768)")
    p.add_argument("--taps", type=int, default=10, help="repeat taps per photo (default 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    photos = _photos((w, h))
    rows = {sel: measure(tracenet.load(args.checkpoint, selection=sel, zoom=False), photos, args.taps)
            for sel in ("paper", "ranker")}
    print(f"{len(photos)} photos at {w}x{h}, {args.taps} repeat taps each, {args.threads} thread(s), traced path")
    print("| candidate choice | first tap (ms) | repeat tap (ms) |")
    print("|---|---:|---:|")
    for sel, r in rows.items():
        print(f"| {sel} | {r['first_ms']:.1f} | {r['repeat_ms']:.1f} |")
    ratio = {k: rows["ranker"][k] / rows["paper"][k] for k in ("first_ms", "repeat_ms")}
    print(f"| ranker / paper | {ratio['first_ms']:.2f}x | {ratio['repeat_ms']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
