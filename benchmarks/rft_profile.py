"""Where a traced tap's wall time goes, stage by stage, next to FullNet's, measured in one process.

Stages of TraceNet (``TapSegmenter.predict`` through the Receptive Field Tracer): *capture* (torch.fx, once per
model), *shapes* (shape propagation, once per input shape), *plan* (back-tracing: rules, windows, MACs),
*segment* (finding or compiling the whole-map part), *whole-map* (running it), *cropped* (the rest, node by node),
*candidates + masks* (everything in ``predict`` after the network: gather, NMS / ranker, dynamic mask head,
resizing to the photo). FullNet's first tap is split into the network and the same candidate and mask work.

    python benchmarks/rft_profile.py [--size 1024x768] [--repeats 5] [--new-shapes 3] [--threads 2] [--mask-region image]

Prints a Markdown table (medians over ``--repeats`` photos, interleaved). The machine is shared: read the ratios,
not the absolute milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tracenet.bench.efficiency import photo, taps_for  # noqa: E402
from tracenet.predictor import TapSegmenter  # noqa: E402
from tracenet.rft import ReceptiveFieldTracer, segment  # noqa: E402

STAGES = ("shapes", "plan", "segment", "whole_map", "cropped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of the network input (photo resized)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-shapes", type=int, default=3, help="never-seen input shapes to time (1-5)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mask-region", default="image", choices=["image", "box"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    image = photo(width, height)
    taps = taps_for(width, height)

    seg = TapSegmenter.from_checkpoint(max_side=max(width, height), mask_region=args.mask_region)
    stage_sums: dict[str, float] = {}
    tracer_run = seg.tracer.run

    def run_and_add(*a, **k):  # a tap may trace more than once (mask_region="box"): sum the stages of all runs
        out = tracer_run(*a, **k)
        for key, sec in seg.tracer.last_seconds.items():
            stage_sums[key] = stage_sums.get(key, 0.0) + sec
        return out

    seg.tracer.run = run_and_add
    cpu_rows: dict[str, list[float]] = {}

    def tap(xy, use_rft=True, cpu_key=None):
        stage_sums.clear()
        c0 = time.process_time()
        res = seg.predict(xy, use_rft=use_rft)
        if cpu_key:
            cpu_rows.setdefault(cpu_key, []).append((time.process_time() - c0) * 1e3)
        return res, {k: v * 1e3 for k, v in stage_sums.items()}
    t0 = time.perf_counter()
    ReceptiveFieldTracer(seg.model)
    capture_ms = (time.perf_counter() - t0) * 1e3
    seg.set_image(image)
    cold, cold_stages = tap(taps[0])
    seg.predict(taps[0], use_rft=False)
    segment.REWRITE = False  # compile the not-rewritten segment too, outside the timed loop
    seg.set_image(image)
    seg.predict(taps[0])
    segment.REWRITE = True

    rows: dict[str, list[float]] = {}

    def add(key: str, ms: float) -> None:
        rows.setdefault(key, []).append(ms)

    for i in range(args.repeats):
        xy = taps[i % len(taps)]
        seg.set_image(image)
        res, stages = tap(xy, cpu_key="traced first")
        add("traced first", res.latency_ms)
        for k in STAGES:
            add(f"traced first: {k}", stages.get(k, 0.0))
        add("traced first: candidates + masks", res.latency_ms - sum(stages.get(k, 0.0) for k in STAGES))
        seg.set_image(image)  # the same first tap with the whole-map segment not rewritten (tracenet.rft.inplace)
        segment.REWRITE = False
        try:
            add("traced first, segment not rewritten", tap(xy, cpu_key="traced first, not rewritten")[0].latency_ms)
        finally:
            segment.REWRITE = True
        seg.set_image(image)
        tap(xy)
        res, stages = tap(taps[(i + 1) % len(taps)], cpu_key="traced repeat")
        add("traced repeat", res.latency_ms)
        for k in STAGES:
            add(f"traced repeat: {k}", stages.get(k, 0.0))
        add("traced repeat: candidates + masks", res.latency_ms - sum(stages.get(k, 0.0) for k in STAGES))
        seg.set_image(image)
        t0 = time.perf_counter()
        with torch.no_grad():
            seg.model(seg._x)
        net_ms = (time.perf_counter() - t0) * 1e3
        seg.set_image(image)
        res, _ = tap(xy, use_rft=False, cpu_key="FullNet first")
        add("FullNet first", res.latency_ms)
        add("FullNet first: network (separate run)", net_ms)
        add("FullNet first: candidates + masks", res.latency_ms - net_ms)
        add("FullNet repeat", tap(taps[(i + 1) % len(taps)], use_rft=False, cpu_key="FullNet repeat")[0].latency_ms)

    # never-seen input shapes in a warm process (what a photo of a new size costs), each against warm first taps at
    # that same shape; the first of them is reported stage by stage
    new_shapes = [(width - 24, height - 16), (width - 40, height - 8), (width - 8, height - 32),
                  (width - 56, height - 24), (width - 16, height - 48)][:max(1, args.new_shapes)]
    shape_ratios, new_firsts, warm_medians = [], [], []
    for n, (w_new, h_new) in enumerate(new_shapes):
        other = photo(w_new, h_new)
        seg.set_image(other)
        first, stages = tap(taps[0], cpu_key="new shape first")
        if n == 0:
            new_shape, new_stages = first, stages
        warm_other = []
        for i in range(max(2, args.repeats)):
            seg.set_image(other)
            warm_other.append(tap(taps[i % len(taps)], cpu_key="new shape warm first")[0].latency_ms)
        new_firsts.append(first.latency_ms)
        warm_medians.append(statistics.median(warm_other))
        shape_ratios.append(first.latency_ms / warm_medians[-1])

    med = {k: statistics.median(v) for k, v in rows.items()}
    full_first = med["FullNet first"]
    print(f"Bundled model, network input {width}x{height}, mask_region={args.mask_region!r}, {args.threads} threads, "
          f"torch {torch.__version__}; medians of {args.repeats} (shared machine: compare ratios)\n")
    print("| stage | ms | / FullNet first tap |")
    print("|---|---:|---:|")
    print(f"| capture (once per model) | {capture_ms:.1f} | {capture_ms / full_first:.3f} |")
    print(f"| first tap of a new input shape (cold) | {cold.latency_ms:.1f} | {cold.latency_ms / full_first:.3f} |")
    for k in STAGES:
        print(f"| cold: {k} | {cold_stages.get(k, 0.0):.1f} | {cold_stages.get(k, 0.0) / full_first:.3f} |")
    warm_ms = warm_medians[0]
    print(f"| new shape {new_shapes[0][0]}x{new_shapes[0][1]}, warm process: first tap | {new_shape.latency_ms:.1f} | "
          f"{new_shape.latency_ms / full_first:.3f} |")
    for k in STAGES:
        print(f"| new shape: {k} | {new_stages.get(k, 0.0):.1f} | {new_stages.get(k, 0.0) / full_first:.3f} |")
    print(f"| new shape: warm first tap at that shape | {warm_ms:.1f} | {warm_ms / full_first:.3f} |")
    shapes_txt = ", ".join(f"{w}x{h}: {r:.2f}x" for (w, h), r in zip(new_shapes, shape_ratios))
    print(f"| new shapes, first tap / warm first tap at each ({shapes_txt}) | | |")
    print(f"| **new shape first tap / warm first tap, median of {len(new_shapes)} shapes** | "
          f"{statistics.median(shape_ratios):.2f}x | |")
    for key, ms in med.items():
        print(f"| {key} | {ms:.1f} | {ms / full_first:.3f} |")
    cpu = {k: statistics.median(v) for k, v in cpu_rows.items()}
    print("\nProcess CPU time per tap (all threads; steadier than wall time on a busy machine):\n")
    print("| tap | CPU ms | / FullNet first tap |")
    print("|---|---:|---:|")
    for key, ms in cpu.items():
        print(f"| {key} | {ms:.1f} | {ms / cpu['FullNet first']:.3f} |")
    print(f"| **new shape first / warm first (CPU)** | {cpu['new shape first'] / cpu['new shape warm first']:.2f}x | |")


if __name__ == "__main__":
    main()
