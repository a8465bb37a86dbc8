"""How much does the candidate choice cost a first click? The tap ranker's pick against the best candidate.

For every object of a folder benchmark (``images/<stem>`` + ``masks/<stem>.png``, 0 / 128 / 255 as
``tracenet.eval.folder`` reads them) the first click (the object pixel farthest from its boundary, as the
evaluator's mIoU@1) is answered by FullNet with the network's own masks (no zoom pass, no refinement): every
candidate above ``min_score`` gets its mask, and the table gives the mean IoU (the 128 band left out, as the
evaluator does) of the best candidate (an oracle that knows the ground truth), of the checkpoint's tap ranker's
pick and of the paper's rule (the highest ``cls * ctr``). A large gap between the oracle and the ranker says the
choice, not the masks, holds the first click back.

    python benchmarks/first_click_oracle.py --masks ../shared/data/interactive/Berkeley/masks \\
        [--checkpoint MODEL] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import tracenet
from tracenet.train.tap_ranker import folder_first_clicks


def first_click_choices(checkpoint: str | None, masks: Path) -> dict[str, float]:
    """Mean first-click IoU over the objects under ``masks``: ``oracle`` / ``ranker`` / ``paper`` (keys), and
    ``objects`` (their number)."""
    seg = tracenet.load(checkpoint, selection="paper", refine="none", zoom=False)
    ranker = tracenet.load(checkpoint, refine="none", zoom=False).ranker
    if ranker is None:
        raise SystemExit("this checkpoint has no tap ranker; fit one with python -m tracenet.train.tap_ranker")
    rows = []
    for _, _, feats, ious in folder_first_clicks(seg, masks):
        if not ious:
            rows.append((0.0, 0.0, 0.0))
            continue
        paper = int(feats[:, 0].argmax())  # feature 0: the logit of cls * ctr
        rows.append((max(ious), ious[int(ranker(feats).argmax())], ious[paper]))
    r = np.array(rows)
    return {"objects": len(r), "oracle": float(r[:, 0].mean()), "ranker": float(r[:, 1].mean()),
            "paper": float(r[:, 2].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--masks", type=Path, required=True, help="masks/ folder of a folder benchmark")
    ap.add_argument("--checkpoint", default=None, help="model with a tap ranker (default: the bundled one)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    m = first_click_choices(args.checkpoint, args.masks)
    print("| set | objects | best candidate (oracle) | tap ranker | paper's rule |\n|---|---:|---:|---:|---:|")
    print(f"| {args.masks.parent.name} | {m['objects']} | {m['oracle']:.4f} | {m['ranker']:.4f} | {m['paper']:.4f} |")


if __name__ == "__main__":
    main()
