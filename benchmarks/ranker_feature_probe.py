"""Would the tap ranker choose better with features it does not have? A probe, not a shipped feature.

The shipped ranker sees scores, box, level, mask area and whether the mask reaches the tap
(:data:`~tracenet.model.tap_ranker.FEATURE_NAMES`). On Berkeley's first clicks it picks candidates worth 0.691
mean IoU where the best candidate gives 0.758 (``benchmarks/first_click_oracle.py``). This probe adds three
columns computed from the candidate's mask at network-input size and the network-input photo:

- ``log_edge``: log of the mean Sobel gradient magnitude of the photo (grey) on the mask's boundary pixels over
  its mean on the whole photo (a whole object's outline tends to follow the photo's edges; a part's cut does not);
- ``mask_conf``: the mean probability over the mask's pixels (p > 0.5);
- ``box_fill``: mask pixels over box pixels (at most 4: a mask can reach far beyond a small box).

It collects the taps of coco-mini train + coco-single (as ``python -m tracenet.train.tap_ranker --also``), fits
two rankers with the same seed and objective, one on the shipped columns alone and one with the three added, and
prints per held-out share and per folder set (first clicks, network masks, no zoom or refinement) the mean IoU of
each ranker's pick and of the best candidate.

    python benchmarks/ranker_feature_probe.py --checkpoint MODEL --out results/eval/ranker-feature-probe.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import tracenet
from tracenet.model.tap_ranker import FEATURE_NAMES, mlp_scores
from tracenet.train.tap_ranker import (
    TapExamples,
    choice_metrics,
    collect_tap_examples,
    fit_ranker_layers,
    folder_first_clicks,
    held_out_from,
    ranker_choice,
)

EXTRA = ("log_edge", "mask_conf", "box_fill")
_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _gradient(x: torch.Tensor) -> torch.Tensor:
    """``x [1, 3, H, W]`` (normalised network input) -> ``[H, W]`` Sobel magnitude of its channel mean."""
    grey = x.float().mean(dim=1, keepdim=True)
    k = torch.stack([_SOBEL, _SOBEL.t()])[:, None]
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), k)
    return g.pow(2).sum(dim=1)[0].sqrt()


def extra_features(seg, cands, mask_probs) -> torch.Tensor:
    """``float [K, 3]``: :data:`EXTRA` for each candidate (see the module docstring)."""
    if getattr(seg, "_probe_x", None) is not seg._x:
        seg._probe_x, seg._probe_grad = seg._x, _gradient(seg._x)
    grad = seg._probe_grad
    rows = []
    for k, cand in enumerate(cands):
        p = torch.as_tensor(mask_probs(k).dense())
        m = p > 0.5
        if not m.any():
            rows.append((0.0, 0.0, 0.0))
            continue
        eroded = -F.max_pool2d(-m[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0.5
        edge = m & ~eroded
        x0, y0, x1, y1 = cand.box
        box_area = max((x1 - x0) * (y1 - y0), 1.0)
        on_edge = grad[edge].mean() if edge.any() else grad.mean()  # a mask of the whole photo has no outline
        rows.append((float(torch.log((on_edge + 1e-3) / (grad.mean() + 1e-3))), float(p[m].mean()),
                     min(float(m.sum()) / box_area, 4.0)))
    return torch.tensor(rows, dtype=torch.float32)


def first_click_picks(seg, masks: Path, fits: dict) -> dict[str, float]:
    """Mean first-click IoU on a folder set: each fitted ranker's pick (``fits``: name -> (columns, (mean, std,
    layers)))) and the best candidate (``oracle``)."""
    got: dict[str, list[float]] = {name: [] for name in [*fits, "oracle"]}
    for cands, mask_probs, feats, ious in folder_first_clicks(seg, masks):
        if not ious:
            for v in got.values():
                v.append(0.0)
            continue
        feats = torch.cat([feats, extra_features(seg, cands, mask_probs)], dim=1)
        got["oracle"].append(max(ious))
        for name, (cols, (mean, std, layers)) in fits.items():
            got[name].append(ious[int(mlp_scores(feats[:, cols], mean, std, layers).argmax())])
    return {name: float(np.mean(v)) for name, v in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="model (default: the bundled one)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--max-images", type=int, default=None, help="only the first N images of each training set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="also write the table here (Markdown)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seg = tracenet.load(args.checkpoint, selection="paper", refine="none", zoom=False)
    sources = [args.data / "coco-mini" / "train.json", args.data / "coco-single" / "single.json"]
    parts = [collect_tap_examples(seg, ann, ann.parent / "images", max_images=args.max_images,
                                  extra_features=extra_features) for ann in sources]
    ex = TapExamples.concat(parts)
    held = torch.cat([e.image_index >= held_out_from(e, 0.2) for e in parts])
    n = len(FEATURE_NAMES)
    columns = {"shipped features": list(range(n)), "+ log_edge, mask_conf, box_fill": list(range(n + len(EXTRA)))}

    def with_columns(e: TapExamples, cols: list[int]) -> TapExamples:
        return TapExamples(e.features[..., cols], e.inter, e.union, e.valid, e.gt_area, e.image_index, e.first_click)

    lines = ["| ranker | held-out mIoU-T | held-out mTA | held-out first click | GrabCut first click | "
             "Berkeley first click |", "|---|---:|---:|---:|---:|---:|"]
    fits, held_metrics = {}, {}
    for name, cols in columns.items():
        mean, std, layers = fit_ranker_layers(with_columns(ex.subset(~held), cols))
        held_ex = with_columns(ex.subset(held), cols)
        choice = ranker_choice(lambda f, mean=mean, std=std, layers=layers: mlp_scores(f, mean, std, layers), held_ex)
        held_metrics[name] = choice_metrics(choice, held_ex)
        fits[name] = (cols, fit_ranker_layers(with_columns(ex, cols)))
    sets = {s: first_click_picks(seg, args.data / "interactive" / s / "masks", fits) for s in ("GrabCut", "Berkeley")}
    for name, m in held_metrics.items():
        lines.append(f"| {name} | {m['miou_t']:.4f} | {m['mta_taps']:.4f} | {m['first_click_iou']:.4f} | "
                     f"{sets['GrabCut'][name]:.4f} | {sets['Berkeley'][name]:.4f} |")
    lines.append(f"| best candidate (oracle) | | | | {sets['GrabCut']['oracle']:.4f} | {sets['Berkeley']['oracle']:.4f} |")
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.out:
        args.out.write_text(f"# Ranker feature probe\n\n`python benchmarks/ranker_feature_probe.py`"
                            f"{' --checkpoint ' + str(args.checkpoint) if args.checkpoint else ''}\n\n{table}")


if __name__ == "__main__":
    main()
