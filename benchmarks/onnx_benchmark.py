"""onnxruntime engine vs PyTorch (FullNet and the traced path), measured in one run, interleaved.

For each network input size (1024x768 as in the efficiency table, and 384x288, the bundled model's own size):
first tap on a new photo (PyTorch: set_image + predict; ONNX: set_image = encoder, + predict = decoder + core),
the encoder and the decoder of the ONNX engine separately, and a repeat tap (a new cell on the same photo).
Medians over ``--repeats`` photos (the coffee example resized) and ``--taps`` repeat taps each; ratios to
PyTorch FullNet. Prints a markdown table and writes it (and JSON) to ``--out``.

    python benchmarks/onnx_benchmark.py --threads 1 --out results/onnx
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

import tracenet
from tracenet.bench.efficiency import photo, taps_for
from tracenet.io import fit_long_side
from tracenet.tap import align_tap
from tracenet.tap.masks import normalize_image


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def measure(width: int, height: int, max_side: int, repeats: int, n_taps: int, threads: int) -> dict[str, float]:
    # the engines alone: no zoom pass and no boundary refinement (tracenet.load()'s defaults since sessions 9 and
    # 16), which add the same work to every engine and would hide the difference this benchmark is for
    torch_seg = tracenet.load(max_side=max_side, zoom=False, refine="none")
    onnx_seg = tracenet.load(engine="onnx", max_side=max_side, threads=threads, zoom=False, refine="none")
    taps = taps_for(width, height, n_taps + 1)
    times: dict[str, list[float]] = {k: [] for k in (
        "fullnet_first", "traced_first", "onnx_first", "onnx_encoder", "onnx_decoder", "onnx_repeat",
        "fullnet_repeat", "traced_repeat")}
    for r in range(repeats + 1):  # the first round warms up (trace plans, onnxruntime arenas) and is dropped
        img = photo(width + r, height)  # a new photo each round (one pixel wider), so nothing is cached
        rec = {}
        rec["fullnet_first"] = _timed(lambda img=img: (torch_seg.set_image(img), torch_seg.predict(taps[0], use_rft=False)))
        rep = [_timed(lambda xy=xy: torch_seg.predict(xy, use_rft=False)) for xy in taps[1:]]
        rec["fullnet_repeat"] = statistics.median(rep)
        rec["traced_first"] = _timed(lambda img=img: (torch_seg.set_image(img), torch_seg.predict(taps[0])))
        rec["traced_repeat"] = statistics.median([_timed(lambda xy=xy: torch_seg.predict(xy)) for xy in taps[1:]])
        rec["onnx_first"] = _timed(lambda img=img: (onnx_seg.set_image(img), onnx_seg.predict(taps[0])))
        rec["onnx_repeat"] = statistics.median([_timed(lambda xy=xy: onnx_seg.predict(xy)) for xy in taps[1:]])
        # the encoder alone, on the same network input

        net_rgb, _ = fit_long_side(img, max_side)
        tensor = normalize_image(np.array(net_rgb))
        rec["onnx_encoder"] = _timed(lambda t=tensor: onnx_seg.encoder.run(None, {"image": t}))
        cells = [align_tap((xy[0] * onnx_seg._scale, xy[1] * onnx_seg._scale), onnx_seg.net_hw) for xy in taps[1:]]
        rec["onnx_decoder"] = statistics.median([_timed(lambda c=c: onnx_seg.decode(c)) for c in cells])
        if r:
            for k, v in rec.items():
                times[k].append(v)
    return {k: statistics.median(v) for k, v in times.items()} | {"net_hw": list(onnx_seg.net_hw)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--taps", type=int, default=8, help="repeat taps per photo")
    ap.add_argument("--out", type=Path, default=Path("results/onnx"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    for label, (w, h, side) in {"1024x768": (1024, 768, 1024), "384x288 (bundled model's size)": (1024, 768, 384)}.items():
        print(f"measuring {label} ...", file=sys.stderr, flush=True)
        results[label] = measure(w, h, side, args.repeats, args.taps, args.threads)
    header = (f"{args.threads} thread(s), torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
              f"{platform.processor() or platform.machine()}; medians of {args.repeats} photos x {args.taps} repeat "
              "taps, all methods interleaved in one run on a machine shared with other jobs (ratios hold, absolute "
              "times are not idle-machine numbers). Ranker selection (the bundled default) throughout.")
    lines = [header, "", "| network input | measure | PyTorch FullNet (ms) | PyTorch traced (ms) | ONNX (ms) | "
             "ONNX / FullNet |", "|---|---|---:|---:|---:|---:|"]
    for label, t in results.items():
        lines.append(f"| {label} | first tap (new photo) | {t['fullnet_first']:.1f} | {t['traced_first']:.1f} | "
                     f"{t['onnx_first']:.1f} | {t['onnx_first'] / t['fullnet_first']:.2f} |")
        lines.append(f"| {label} | ONNX encoder alone | | | {t['onnx_encoder']:.1f} | |")
        lines.append(f"| {label} | ONNX decoder alone, per tap | | | {t['onnx_decoder']:.1f} | |")
        lines.append(f"| {label} | repeat tap (decoder + core) | {t['fullnet_repeat']:.1f} | {t['traced_repeat']:.1f} | "
                     f"{t['onnx_repeat']:.1f} | {t['onnx_repeat'] / t['fullnet_repeat']:.2f} |")
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.md").write_text(table)
    (args.out / "benchmark.json").write_text(json.dumps({"threads": args.threads, "results": results}, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
