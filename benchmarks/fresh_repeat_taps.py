"""Repeat taps at fresh random places (none repeated), with the repeat tap's plan shortcuts on and off.

`tracenet bench` repeats the same few taps on each photo, so a plan remembered by its windows
(``ReceptiveFieldTracer._plan_with_cache``) serves every repeat there; a person taps somewhere new each time. This
benchmark taps ``--taps`` new random places on each bundled photo resized to ``--size`` (bench setting: preset
lite0, random head weights, no tap ranker, ``min_score=0``), each tap twice in a row, once with the plan shortcuts
(per-group plans remembered or translated, :data:`tracenet.rft.tracer.TRANSLATE`) and once planning from scratch,
the order alternating tap by tap. Prints medians and 90th percentiles of the whole tap and of its planning stage.

    python benchmarks/fresh_repeat_taps.py --threads 2 --taps 100
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

import tracenet.bench.efficiency as efficiency
import tracenet.rft.tracer as tracer_module
from tracenet.model import build_model, preset
from tracenet.predictor import TapSegmenter

PHOTOS = ("coffee.png", "cat.png", "astronaut.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--taps", type=int, default=100, help="fresh taps per photo")
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of the photos")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    cfg = preset("lite0", pretrained_backbone=True)
    torch.manual_seed(0)
    seg = TapSegmenter(build_model(cfg).eval(), cfg, min_score=0.0, require_tap_inside=False,
                       max_side=max(width, height))
    rng = np.random.default_rng(args.seed)

    def new_tap() -> tuple[int, int]:
        return int(rng.integers(0, width)), int(rng.integers(0, height))

    tap_ms: dict[bool, list[float]] = {True: [], False: []}
    plan_ms: dict[bool, list[float]] = {True: [], False: []}
    try:
        for name in PHOTOS:
            efficiency.EXAMPLE = name
            seg.set_image(efficiency.photo(width, height))
            for _ in range(4):  # the first tap and a few more: the cache of whole maps settles
                seg.predict(new_tap())
            for i in range(args.taps):
                tap = new_tap()
                for shortcuts in ((True, False) if i % 2 else (False, True)):
                    tracer_module.TRANSLATE = shortcuts
                    tap_ms[shortcuts].append(seg.predict(tap).latency_ms)
                    plan_ms[shortcuts].append(seg.tracer.last_seconds["plan"] * 1e3)
    finally:
        tracer_module.TRANSLATE = True

    def p90(v: list[float]) -> float:
        return float(np.percentile(v, 90))

    n = len(tap_ms[True])
    print(f"{n} fresh repeat taps ({args.taps} per photo x {len(PHOTOS)} photos at {width}x{height}), "
          f"{args.threads} threads, torch {torch.__version__}\n")
    print("| plan shortcuts | repeat tap median (ms) | p90 | planning median (ms) | p90 |")
    print("|---|---:|---:|---:|---:|")
    for shortcuts in (False, True):
        t, p = tap_ms[shortcuts], plan_ms[shortcuts]
        print(f"| {'on' if shortcuts else 'off'} | {statistics.median(t):.2f} | {p90(t):.2f} | "
              f"{statistics.median(p):.2f} | {p90(p):.2f} |")
    print(f"\nratio on / off (medians): repeat tap {statistics.median(tap_ms[True]) / statistics.median(tap_ms[False]):.3f}, "
          f"planning {statistics.median(plan_ms[True]) / statistics.median(plan_ms[False]):.3f}")


if __name__ == "__main__":
    main()
