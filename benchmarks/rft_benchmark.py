"""Receptive Field Tracer benchmark: full vs traced run of ResNet-50 + FPN (P3-P7) + four 3x3 conv towers.

Prints one Markdown table (full and traced side by side, with ratios): multiply-accumulates, CPU wall time (median
of several runs, in one process, interleaved), and what the rectangle approximation costs over the exact set of
contributing positions. One query per level, at the location a tap in the middle of the image aligns to.

    python benchmarks/rft_benchmark.py [--depth 50] [--size 1024x768] [--channels 256] [--repeats 5] [--channels-last]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.rft.detection_nets import ResNetFPNTowers, calibrated  # noqa: E402
from tracenet.rft import ReceptiveFieldTracer  # noqa: E402
from tracenet.rft import segment  # noqa: E402
from tracenet.rft.allocator import reuse_freed_memory  # noqa: E402
from tracenet.rft.dependency import exact_masks, rect_vs_exact  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of the input")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--towers", type=int, default=2, choices=[1, 2],
                        help="4-conv towers per level: 2 = classification + box, as in FCOS/CondInst")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs of each first (allocator, kernels)")
    parser.add_argument("--channels-last", action="store_true",
                        help="model and input in channels-last memory (the full run gets the same)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--tap", default=None, help="X,Y tap in input pixels (default: the image centre)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc as it is (default: freed feature maps are reused, for both runs)")
    args = parser.parse_args()
    malloc_tuned = False if args.system_malloc else reuse_freed_memory()
    width, height = (int(v) for v in args.size.lower().split("x"))
    tap = tuple(int(v) for v in args.tap.split(",")) if args.tap else (width // 2, height // 2)

    torch.manual_seed(0)
    net = calibrated(ResNetFPNTowers(depth=args.depth, channels=args.channels, towers=args.towers),
                     shape=(1, 3, 256, 320))
    x = torch.randn(1, 3, height, width)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    tracer = ReceptiveFieldTracer(net)
    queries = {}
    for lvl, key in enumerate(["p3", "p4", "p5", "p6", "p7"], start=3):
        h, w = tracer.output_hw(tuple(x.shape), key)
        s = 2**lvl
        queries[key] = [(min(tap[1] // s, h - 1), min(tap[0] // s, w - 1))]
    plan = tracer.plan(tuple(x.shape), queries)

    whole = {key: None for key in queries}  # every output whole: the full run through the tracer's own segment
    full_times, traced_times, full_cpu, traced_cpu, seg_times, plain_times = [], [], [], [], [], []

    def plain_traced():  # the same traced run, its whole-map segment not rewritten (in place)
        segment.REWRITE = False
        try:
            tracer.gather(x, queries)
        finally:
            segment.REWRITE = True

    stages: dict[str, list[float]] = {}
    with torch.no_grad():
        full = net(x)  # the reference
        got = tracer.gather(x, queries)
        for _ in range(args.warmup):
            net(x)
            tracer.gather(x, queries)
            tracer.run(x, whole)
            plain_traced()
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            net(x)
            full_times.append(time.perf_counter() - t0)
            full_cpu.append(time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            tracer.gather(x, queries)
            traced_times.append(time.perf_counter() - t0)
            traced_cpu.append(time.process_time() - c0)
            for k, v in tracer.last_seconds.items():
                stages.setdefault(k, []).append(v)
            t0 = time.perf_counter()
            tracer.run(x, whole)
            seg_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            plain_traced()
            plain_times.append(time.perf_counter() - t0)
    max_diff = max(float((got[k] - full[k][..., [p[0] for p in q], [p[1] for p in q]]).abs().max())
                   for k, q in queries.items())

    layout = tracer.layout(tuple(x.shape))
    masks = exact_masks(layout, tracer.output_nodes(), queries)
    approx = rect_vs_exact(layout, plan, masks)

    t_full, t_traced = statistics.median(full_times), statistics.median(traced_times)
    print(f"R{args.depth}-FPN + {args.towers} x 4-conv towers ({args.channels} ch), input {width}x{height}, one query per level "
          f"(tap {tap}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'channels-last' if args.channels_last else 'contiguous'} memory, "
          f"{'malloc reusing freed maps' if malloc_tuned else 'system malloc'}, "
          f"median of {args.repeats}\n")
    print("| measure | full | traced | traced / full |")
    print("|---|---:|---:|---:|")
    print(f"| GMACs | {plan.full_macs / 1e9:.2f} | {plan.macs / 1e9:.2f} | {plan.ratio:.3f} |")
    print(f"| CPU wall time (ms) | {t_full * 1e3:.0f} | {t_traced * 1e3:.0f} | {t_traced / t_full:.3f} |")
    c_full, c_traced = statistics.median(full_cpu), statistics.median(traced_cpu)
    print(f"| process CPU time (ms, all threads) | {c_full * 1e3:.0f} | {c_traced * 1e3:.0f} | "
          f"{c_traced / c_full:.3f} |")
    print(f"| conv positions computed: rectangles vs exact set | {approx['rect_positions']:,} | "
          f"{approx['exact_positions']:,} | {approx['exact_positions'] / max(1, approx['rect_positions']):.3f} |")
    print(f"| GMACs on rectangles vs exact set | {approx['rect_macs'] / 1e9:.3f} | {approx['exact_macs'] / 1e9:.3f} "
          f"| {approx['exact_macs'] / max(1, approx['rect_macs']):.3f} |")
    t_seg = statistics.median(seg_times)
    print(f"| CPU wall time, full run through the tracer's compiled whole-map segment (same rewrite) (ms) | "
          f"{t_seg * 1e3:.0f} | {t_traced * 1e3:.0f} | {t_traced / t_seg:.3f} |")
    t_plain = statistics.median(plain_times)
    print(f"| CPU wall time, traced with the whole-map segment not rewritten (ms) | {t_full * 1e3:.0f} | "
          f"{t_plain * 1e3:.0f} | {t_plain / t_full:.3f} |")
    med = {k: statistics.median(v) * 1e3 for k, v in stages.items()}
    print("\ntraced run by stage (ms, medians): " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
    bound = plan.ratio + 0.08
    print(f"target: traced / full wall time <= MACs ratio + 0.08 = {bound:.3f}: "
          f"{'met' if t_traced / t_full <= bound else 'not met'} ({t_traced / t_full:.3f})")
    print(f"\nwork saved: {100 * (1 - plan.ratio):.1f}%  |  rectangle overhead over the exact dependency set: "
          f"{100 * (approx['rect_macs'] / max(1, approx['exact_macs']) - 1):.2f}% of traced conv MACs  |  "
          f"max |traced - full| at the queries: {max_diff:.2e}")


if __name__ == "__main__":
    main()
