"""How the zoom-in pass's settings move the paper's metric and first clicks: mIoU-T and first-click IoU on the first
``--images`` coco-mini val images for each setting, in one process, printed as a table (and written as JSON).

Each setting is ``off`` (one pass) or ``key=value,...`` of :class:`tracenet.tap.zoom.ZoomConfig` (``min_gain``,
``min_inside``, ``expand``, ``min_side``). The bundled model (or ``--checkpoint``), FullNet, its tap ranker, no
refinement unless ``--refine``; mTA is skipped (it needs a tap on every pixel and does not change the ranking of
settings much), so this is a probe for choosing settings, not the issue's scoring (``scripts/score_candidate.sh``).

    python benchmarks/zoom_rules.py --images 46 off min_inside=0 min_inside=0.5 min_inside=0.5,min_gain=1.4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def parse_setting(text: str) -> dict | None:
    """``"off"`` -> None; ``"min_gain=1.4,min_inside=0.5"`` -> ``{"min_gain": 1.4, "min_inside": 0.5}``."""
    if text == "off":
        return None
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if not value:
            raise SystemExit(f"setting {text!r}: expected key=value[,key=value...] or off")
        out[key.strip()] = int(value) if key.strip() == "min_side" else float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("settings", nargs="+", help="off, or key=value[,key=value] of ZoomConfig")
    p.add_argument("--images", type=int, default=46, help="first N val images (default 46, half of coco-mini val)")
    p.add_argument("--data", default="../shared/data", help="folder with coco-mini/")
    p.add_argument("--checkpoint", default=None, help="model (default: the bundled one)")
    p.add_argument("--refine", default="none", help="boundary refinement (default none: the network's mask)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="JSON file for the rows")
    args = p.parse_args(argv)

    import torch

    import tracenet
    from tracenet.eval.evaluate import EvalConfig, evaluate_coco
    from tracenet.eval.methods import TraceNetMethod
    from tracenet.tap.zoom import ZoomConfig

    torch.set_num_threads(args.threads)
    settings = [(text, parse_setting(text)) for text in args.settings]
    for text, cfg in settings:
        if cfg is not None:
            ZoomConfig(**cfg)  # bad keys or values fail before any work
    data = Path(args.data) / "coco-mini"
    rows = []
    for text, cfg in settings:
        kwargs = {"zoom": False} if cfg is None else {"zoom": True, "zoom_cfg": ZoomConfig(**cfg)}
        seg = tracenet.load(args.checkpoint, refine=args.refine, **kwargs)
        start = time.perf_counter()
        run = evaluate_coco(TraceNetMethod(segmenter=seg, use_rft=False), data / "val.json", data / "images",
                            EvalConfig(mta_stride=0, max_images=args.images, progress=False, n_showcase=0))
        m = run.metrics
        rows.append({"setting": text, "miou_t": m["miou_t"], "first_click_iou": m["first_click_iou"],
                     "n_instances": m["n_instances"], "seconds": round(time.perf_counter() - start, 1)})
        print(f"{text}: mIoU-T {m['miou_t']:.4f}, first click {m['first_click_iou']:.4f} "
              f"({m['n_instances']} objects, {rows[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
    print(f"\n| zoom setting | mIoU-T | first click |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['setting']} | {r['miou_t']:.4f} | {r['first_click_iou']:.4f} |")
    print(f"\n{rows[0]['n_instances']} objects of the first {args.images} coco-mini val images; FullNet, "
          f"refine={args.refine}; mTA skipped.")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"images": args.images, "refine": args.refine, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
