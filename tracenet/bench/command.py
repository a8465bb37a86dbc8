"""``tracenet bench --out DIR``: the efficiency table as ``bench.json`` + ``bench.md`` (also printed)."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json and bench.md")
    parser.add_argument("--models", default="lite0,r50,r101", help="comma-separated presets (default lite0,r50,r101)")
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of the photo (default 1024x768)")
    parser.add_argument("--repeats", type=int, default=5, help="photos per method; medians are reported")
    parser.add_argument("--no-sam", action="store_true", help="skip MobileSAM / SAM ViT-B even if installed")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")


def run(args: argparse.Namespace) -> int:
    from tracenet.bench.efficiency import markdown, photo, rows_as_json, sam_rows, taps_for, tracenet_rows

    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    image = photo(width, height)
    taps = taps_for(width, height)
    header = (f"Photo {width}x{height}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}, "
              f"{platform.processor() or platform.machine()}; medians of {args.repeats} photos x {len(taps) - 1} "
              "repeat taps. MACs count convolutions, linear layers and pooling.")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []

    def save() -> str:  # after every method, so an interrupted run keeps what it measured
        table = markdown(rows, header)
        (args.out / "bench.md").write_text(table)
        (args.out / "bench.json").write_text(json.dumps({"width": width, "height": height,
                                                         "threads": torch.get_num_threads(),
                                                         "rows": rows_as_json(rows)}, indent=2))
        return table

    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        rows += tracenet_rows(name, image, taps, args.repeats)
        save()
        print(f"measured {name}", flush=True)
    if not args.no_sam:
        rows += sam_rows(image, taps, max(1, min(args.repeats, 3)))
    table = save()
    print(table)
    return 0
