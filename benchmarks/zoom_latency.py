"""What the zoom-in pass costs per tap: the bundled model on coco-mini val photos resized to 1024x768, tapped at
each object's first click (RITM's clicker: the object pixel farthest from its boundary), so small objects, the
ones the pass zooms in on, are tapped as often as COCO has them.

For each photo, every setting (zoom off / on x refinement none / grabcut; interleaved, so a busy machine slows all
alike) sets the image and taps the first object ("first tap": set_image + predict), then the photo's other objects
("further taps"). Prints medians and 90th percentiles of wall time and of this process's CPU time (with
``--threads 1`` the CPU time is what a tap costs one idle core, even on a busy machine), and how many taps zoomed.

    python benchmarks/zoom_latency.py --data-root ../shared/data --threads 2 --images 20
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
from tracenet.eval.evaluate import load_coco_benchmark
from tracenet.eval.taps import first_click

SETTINGS = [(False, "none"), (True, "none"), (False, "grabcut"), (True, "grabcut")]


def _p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--checkpoint", default=None, help="model (default: the bundled one)")
    p.add_argument("--images", type=int, default=20, help="first N coco-mini val images")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", default="1024x768", help="photo size WxH (default 1024x768)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    root = Path(args.data_root) / "coco-mini"
    bench = load_coco_benchmark(root / "val.json", root / "images")
    segs = {s: tracenet.load(args.checkpoint, zoom=s[0], refine=s[1]) for s in SETTINGS}
    first = {s: [] for s in SETTINGS}
    further = {s: [] for s in SETTINGS}
    zoomed = {s: 0 for s in SETTINGS}
    warm = np.zeros((h, w, 3), np.uint8)
    for seg in segs.values():  # warm-up: trace plans are built once per process and input shape
        seg.set_image(warm)
        seg.predict((w // 2, h // 2))
    for rec in bench.images[: args.images]:
        photo = rec.load()
        sy, sx = h / photo.shape[0], w / photo.shape[1]
        taps = [first_click(r.gt) for r in rec.instances() if r.gt.any()]
        taps = [(min(w - 1, int(x * sx)), min(h - 1, int(y * sy))) for x, y in taps]
        big = np.asarray(Image.fromarray(photo).resize((w, h), Image.Resampling.BILINEAR))
        for s, seg in segs.items():
            for k, tap in enumerate(taps):
                t0, c0 = time.perf_counter(), time.process_time()
                if k == 0:
                    seg.set_image(big)
                res = seg.predict(tap)
                (first if k == 0 else further)[s].append((1e3 * (time.perf_counter() - t0),
                                                         1e3 * (time.process_time() - c0)))
                zoomed[s] += "zoom_window" in res.extras
    n_taps = len(first[SETTINGS[0]]) + len(further[SETTINGS[0]])
    print(f"{args.images} coco-mini val photos at {w}x{h}, {n_taps} first-click taps, {args.threads} thread(s)")
    print("| zoom | refine | first tap wall ms (median / p90) | CPU ms | further tap wall ms (median / p90) "
          "| CPU ms | taps zoomed |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for s in SETTINGS:
        fw, fc = zip(*first[s])
        rw, rc = zip(*further[s]) if further[s] else ((0.0,), (0.0,))
        print(f"| {'on' if s[0] else 'off'} | {s[1]} | {statistics.median(fw):.0f} / {_p90(fw):.0f} | "
              f"{statistics.median(fc):.0f} | {statistics.median(rw):.0f} / {_p90(rw):.0f} | "
              f"{statistics.median(rc):.0f} | {zoomed[s]} of {n_taps} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
