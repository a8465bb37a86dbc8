"""``tracenet export --format onnx --out DIR [--checkpoint CKPT]``: encoder.onnx, decoder.onnx and model.json."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["onnx"], required=True, help="export format (onnx)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (created; existing files replaced)")
    parser.add_argument("--checkpoint", type=Path, help="tracenet .safetensors checkpoint (default: bundled model)")
    parser.add_argument("--max-side", type=int, default=None,
                        help="network input long side recorded in model.json (default: the checkpoint's)")


def run(args: argparse.Namespace) -> int:
    from tracenet.deploy.export import export_onnx
    from tracenet.predictor import DEFAULT_CHECKPOINT

    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint file")
    print(f"exporting {checkpoint} to {args.out} (ONNX) ...", flush=True)
    contract = export_onnx(checkpoint, args.out, max_side=args.max_side)
    for name, entry in contract["files"].items():
        size = (args.out / name).stat().st_size
        print(f"  {name}: {size / 1e6:.2f} MB, {entry['weights']['float16_values']:,} weights stored as float16, "
              f"{entry['weights']['float32_values']:,} as float32")
    sel = contract["selection"]
    print(f"  model.json: max_side {contract['preprocess']['max_side']}, head windows "
          f"{contract['geometry']['head_windows']}, selection {sel['default']}")
    return 0
