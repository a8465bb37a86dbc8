"""What one training iteration of the ``cpu`` preset costs, and what channels_last / bf16 autocast buy.

Builds the ``cpu`` preset's model (lite0, ImageNet backbone, frozen stem) and one batch of 8 augmented
coco-mini training images (LSJ 384 + copy-paste, as the preset; generated shapes with ``--synthetic``), then
times forward + losses + backward in each memory-format / precision variant, interleaved round by round so
that a busy machine slows all variants alike, and the data loading of a batch. Prints a Markdown table of
medians and ratios to the plain float32 NCHW step.

    python benchmarks/train_step_speed.py --data ../shared/data/coco-mini --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

VARIANTS = {
    "float32, NCHW": {"channels_last": False, "autocast": None},
    "float32, channels_last": {"channels_last": True, "autocast": None},
    "bf16 autocast, channels_last": {"channels_last": True, "autocast": torch.bfloat16},
}


def _dataset(args: argparse.Namespace):
    """The ``cpu`` preset's augmented dataset over coco-mini train (or generated shapes), and the preset."""
    from tracenet.data import DataSource, InstanceDataset, load_sources
    from tracenet.train import train_preset

    cfg = train_preset("cpu")
    if args.synthetic:
        import tempfile

        from tests.data.synth import make_shapes_dataset

        ann, images = make_shapes_dataset(Path(tempfile.mkdtemp()), n_images=16, size=384, seed=0)
    else:
        ann, images = args.data / "train.json", args.data / "images"
    index = load_sources([DataSource(ann, images)], class_agnostic=True)
    return InstanceDataset(index, augment=cfg.augment, seed=0), cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/coco-mini"))
    p.add_argument("--synthetic", action="store_true", help="generated shapes instead of coco-mini")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (after one warm-up)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="only these (default all)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from tracenet.data import collate
    from tracenet.model.dense import build_model
    from tracenet.train.freeze import freeze_early_backbone
    from tracenet.train.train_model import TraceNetTrainModel

    dataset, cfg = _dataset(args)
    t0 = time.perf_counter()
    batch = collate([dataset[(i, i)] for i in range(args.batch)])
    data_s = time.perf_counter() - t0
    torch.manual_seed(0)
    dense = build_model(cfg.model_config(1))
    freeze_early_backbone(dense, cfg.freeze_backbone_stride)
    dense.train()
    models = {}
    for name, v in VARIANTS.items():
        m = TraceNetTrainModel(dense, channels_last=v["channels_last"], autocast=v["autocast"])
        models[name] = m

    def step(name: str) -> float:
        fmt = torch.channels_last if VARIANTS[name]["channels_last"] else torch.contiguous_format
        dense.to(memory_format=fmt)
        dense.zero_grad(set_to_none=True)
        start = time.perf_counter()
        losses = models[name](batch.images, batch.image_sizes, batch.targets, torch.Generator().manual_seed(0))
        sum(losses.values()).backward()
        return time.perf_counter() - start

    names = args.variants or list(VARIANTS)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds + 1):
        for name in names:
            t = step(name)
            if r > 0:
                times[name].append(t)
                print(f"round {r} {name}: {t:.2f} s", flush=True)
    base = statistics.median(times["float32, NCHW"])
    print(f"batch {args.batch} at {tuple(batch.images.shape[-2:])} px, {args.threads} threads, "
          f"median of {args.rounds} interleaved rounds; loading + augmenting the batch: {data_s:.2f} s")
    print("| forward + losses + backward | median (s) | speed-up vs float32 NCHW |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.2f} | {base / med:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
