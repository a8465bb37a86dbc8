"""What boundary refinement costs per tap: the bundled model's first tap on a 1024x768 photo with each refiner.

The package's example photos are resized to ``--size``; for each round and photo, each refiner (interleaved, so a
busy machine slows all alike) sets the image and answers one tap at a random pixel (traced path, the default
selection). Reports medians of wall time and of this process's CPU time: with ``--threads 1`` the CPU time is
what the tap costs one idle core, even when the machine is busy.

    python benchmarks/refine_latency.py --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import tracenet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection_latency import _photos, _taps  # noqa: E402  (a sibling benchmark script)

REFINERS = ("none", "guided", "grabcut")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--size", default="1024x768", help="photo size WxH (default 1024x768)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    photos = _photos((w, h))
    segs = {r: tracenet.load(refine=r, zoom=False) for r in REFINERS}
    for seg in segs.values():  # warm-up: trace plans are built once per process
        seg.set_image(photos[0])
        seg.predict((w // 2, h // 2))
    wall: dict[str, list[float]] = {r: [] for r in REFINERS}
    cpu: dict[str, list[float]] = {r: [] for r in REFINERS}
    taps = _taps(w, h, args.rounds * len(photos), seed=0)
    for k, tap in enumerate(taps):
        photo = photos[k % len(photos)]
        for r, seg in segs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            seg.set_image(photo)
            seg.predict(tap)
            wall[r].append(1e3 * (time.perf_counter() - t0))
            cpu[r].append(1e3 * (time.process_time() - c0))
    print(f"first tap (set_image + predict) on {len(photos)} photos at {w}x{h}, {args.threads} thread(s), "
          f"{len(taps)} taps per refiner, medians")
    print("| refine | wall (ms) | CPU (ms) | CPU vs none |")
    print("|---|---:|---:|---:|")
    base = statistics.median(cpu["none"])
    for r in REFINERS:
        c = statistics.median(cpu[r])
        print(f"| {r} | {statistics.median(wall[r]):.0f} | {c:.0f} | +{c - base:.0f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
