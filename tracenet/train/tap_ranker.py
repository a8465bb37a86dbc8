"""Fit a :class:`~tracenet.model.tap_ranker.TapRanker` for a trained model on training images.

Every (instance, band tap) of the paper's tap protocol on the training images gives one example, and so does
every instance's first click (the pixel farthest from its boundary, as the evaluator's mIoU@1 taps): the tap's
candidates (all ``5 x C`` scoring at least the predictor's ``min_score``), their features, and each candidate
mask's intersection and union with the tapped instance. The ranker is fitted (full batch, Adam, fixed seed) to
maximise a soft version of the three things the evaluation measures: with ``p = softmax(ranker scores)`` over a
tap's candidates, on the band taps the pooled ``sum p * inter / sum p * union`` (mIoU-T) plus the area-weighted
share of taps whose candidate reaches IoU 0.7 (mTA), and on the first clicks the mean over instances of the
expected IoU ``sum p * inter / union`` (mIoU@1, every instance weighing the same, so small objects count as much
as large ones) times ``--first-click-weight``. That weight defaults to 0 (band taps alone, the objective the shipped
rankers were fitted with): on the held-out fifth of coco-mini train the long run's ranker picked first clicks
worth 0.3956 (weight 0), 0.3961 (0.5), 0.3966 (1), 0.3968 (2) mean IoU, against 0.4211 for the best candidate of
each tap, so the pick is not what holds the first click back. The first clicks are still collected, and the
held-out report gives their IoU.

    python -m tracenet.train.tap_ranker --model tracenet/weights/default.safetensors \\
        --data ../shared/data/coco-mini --out ranked.safetensors

``--also ANN_JSON`` adds the taps of a further annotation file's annotated objects (e.g. coco-single's
``single.json``, partially annotated: only annotated objects are tapped, so no unannotated object counts against
a candidate); the held-out report then holds out the last share of each file's images.

The output is the input checkpoint (same tensors, same storage dtype) with the ranker in its metadata.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from tracenet.model.tap_ranker import FEATURE_NAMES, TapRanker, mlp_scores

__all__ = ["TapExamples", "collect_tap_examples", "fit_ranker_layers", "fit_tap_ranker", "folder_first_clicks", "main",
           "soft_objective"]

IOU_GOOD = 0.7  # the paper's mTA threshold


@dataclass
class TapExamples:
    """``N`` taps with up to ``K`` candidates each (padding has ``valid = False``).

    Attributes:
        features: ``float32 [N, K, F]`` (``F = len(FEATURE_NAMES)``).
        inter, union: ``float64 [N, K]`` pixel counts of each candidate mask with the tapped instance.
        valid: ``bool [N, K]``.
        gt_area: ``float64 [N]`` pixels of the tapped instance.
        image_index: ``int [N]`` which image (0-based, in the order collected) the tap is on.
        first_click: ``bool [N]``: True for an instance's first click, False for a band tap (``None``: all
            band taps).
    """

    features: torch.Tensor
    inter: torch.Tensor
    union: torch.Tensor
    valid: torch.Tensor
    gt_area: torch.Tensor
    image_index: torch.Tensor
    first_click: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.first_click is None:
            self.first_click = torch.zeros(len(self.gt_area), dtype=torch.bool)

    def subset(self, keep: torch.Tensor) -> TapExamples:
        """The taps where ``keep [N] bool`` is True."""
        return TapExamples(*(t[keep] for t in (self.features, self.inter, self.union, self.valid, self.gt_area,
                                               self.image_index, self.first_click)))

    @staticmethod
    def concat(parts: list[TapExamples]) -> TapExamples:
        """The taps of several collections in order; candidates padded to the widest ``K``, image indices
        offset so that every collection's images stay distinct (collection ``i`` follows collection ``i - 1``)."""
        k = max(e.valid.shape[1] for e in parts)

        def pad(t: torch.Tensor, value: float | bool) -> torch.Tensor:
            extra = (0, 0, 0, k - t.shape[1]) if t.dim() == 3 else (0, k - t.shape[1])
            return torch.nn.functional.pad(t, extra, value=value)

        offsets, start = [], 0
        for e in parts:
            offsets.append(start)
            start += int(e.image_index.max()) + 1 if len(e.image_index) else 0
        return TapExamples(torch.cat([pad(e.features, 0.0) for e in parts]),
                           torch.cat([pad(e.inter, 0.0) for e in parts]), torch.cat([pad(e.union, 1.0) for e in parts]),
                           torch.cat([pad(e.valid, False) for e in parts]), torch.cat([e.gt_area for e in parts]),
                           torch.cat([e.image_index + o for e, o in zip(parts, offsets)]),
                           torch.cat([e.first_click for e in parts]))


def collect_tap_examples(segmenter, ann_file: str | Path, images_dir: str | Path, *, max_images: int | None = None,
                         seed: int = 0, progress: bool = True, extra_features=None) -> TapExamples:
    """Run ``segmenter`` (a :class:`~tracenet.predictor.TapSegmenter`, FullNet path) on the band taps and the
    first click of every non-crowd instance of the first ``max_images`` images of a COCO JSON; see
    :class:`TapExamples`. ``extra_features(segmenter, cands, mask_probs) -> float [K, E]``, if given, adds ``E``
    columns after :data:`FEATURE_NAMES` (a probe of features the ranker does not have)."""
    from pycocotools.coco import COCO
    from tqdm import tqdm

    from tracenet.eval.evaluate import _image_list, _load_image
    from tracenet.eval.taps import simulate_taps
    from tracenet.model import align_tap

    ann_file, images_dir = Path(ann_file), Path(images_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    rows: list[tuple] = []
    work = _image_list(coco, max_images)
    for index, (img_id, anns, _) in enumerate(tqdm(work, desc="ranker taps", unit="img", disable=not progress,
                                                   file=sys.stderr)):
        image = _load_image(coco.loadImgs(img_id)[0], images_dir, ann_file)
        segmenter.set_image(image)
        per_cell: dict[tuple, tuple] = {}  # (rows_cols) -> (features, image masks)
        for ann in anns:
            gt = coco.annToMask(ann).astype(bool)
            if not gt.any():
                continue
            gt_area = int(gt.sum())
            taps = simulate_taps(gt, seed=seed, instance_id=ann["id"])
            for is_first, xy in [(False, xy) for _, xy in taps.band_taps.flat()] + [(True, taps.first_click)]:
                rows_cols = align_tap(segmenter._to_net(xy), segmenter.net_hw)
                key = tuple(rows_cols)
                if key not in per_cell:
                    gathered, mask_feats, _ = segmenter._full(rows_cols)  # one full run per image, cached
                    cands, mask_probs, feats, _, _ = segmenter.ranker_inputs(gathered, rows_cols, mask_feats,
                                                                             use_rft=False)
                    if extra_features is not None and feats is not None:
                        feats = torch.cat([feats, extra_features(segmenter, cands, mask_probs)], dim=1)
                    per_cell[key] = (feats, [segmenter._image_mask(mask_probs(k)) for k in range(len(cands))])
                feats, masks = per_cell[key]
                inter = [int((m & gt).sum()) for m in masks]
                union = [gt_area + int(m.sum()) - i for m, i in zip(masks, inter)]
                rows.append((feats, inter, union, gt_area, index, is_first))
    return _stack(rows)


def folder_first_clicks(segmenter, masks: str | Path) -> Iterator[tuple[list, Callable, torch.Tensor | None, list]]:
    """For each object of a folder benchmark (``masks/<stem>.png`` beside ``images/``, read as the evaluator reads
    them), its first click answered by ``segmenter`` (FullNet path, network masks): ``(cands, mask_probs, feats,
    ious)`` as :meth:`~tracenet.predictor.TapSegmenter.ranker_inputs` gives them, plus each candidate's IoU with the
    object (the 128 band left out); ``ious`` is empty when the click has no candidate."""
    from tracenet.eval.folder import _files_by_stem, read_mask
    from tracenet.eval.instance import iou_counts
    from tracenet.eval.taps import first_click
    from tracenet.model import align_tap

    masks = Path(masks)
    images = _files_by_stem(masks.parent / "images", (".jpg", ".jpeg", ".png"), "image")
    for stem, path in sorted(_files_by_stem(masks, (".png",), "mask").items()):
        obj, ignore = read_mask(path)
        segmenter.set_image(images[stem])
        rows_cols = align_tap(segmenter._to_net(first_click(obj)), segmenter.net_hw)
        gathered, mask_feats, _ = segmenter._full(rows_cols)
        cands, mask_probs, feats, _, _ = segmenter.ranker_inputs(gathered, rows_cols, mask_feats, use_rft=False)
        ious = []
        for k in range(len(cands)):
            inter, union = iou_counts(segmenter._image_mask(mask_probs(k)), obj, ignore=ignore)
            ious.append(inter / union)
        yield cands, mask_probs, feats, ious


def _stack(rows: list[tuple]) -> TapExamples:
    n, k = len(rows), max((len(r[1]) for r in rows), default=1) or 1
    width = next((r[0].shape[1] for r in rows if r[0] is not None), len(FEATURE_NAMES))
    features = torch.zeros(n, k, width)
    inter = torch.zeros(n, k, dtype=torch.float64)
    union = torch.ones(n, k, dtype=torch.float64)
    valid = torch.zeros(n, k, dtype=torch.bool)
    for i, (feats, it, un, *_) in enumerate(rows):
        m = len(it)
        if m:
            features[i, :m] = feats
            inter[i, :m] = torch.tensor(it, dtype=torch.float64)
            union[i, :m] = torch.tensor(un, dtype=torch.float64)
            valid[i, :m] = True
    gt_area = torch.tensor([r[3] for r in rows], dtype=torch.float64)
    image_index = torch.tensor([r[4] for r in rows], dtype=torch.long)
    first = torch.tensor([r[5] for r in rows], dtype=torch.bool)
    return TapExamples(features, inter, union, valid, gt_area, image_index, first)


def soft_objective(logits: torch.Tensor, ex: TapExamples, first_click_weight: float = 0.0) -> torch.Tensor:
    """What the fit maximises for ``logits [N, K]`` on ``ex``: soft pooled mIoU-T plus soft area-weighted mTA of
    the band taps, plus ``first_click_weight`` times the soft mean first-click IoU (expected IoU per first click,
    averaged over first clicks; a tap with no candidate has IoU 0). A part without taps adds 0."""
    logits = logits.masked_fill(~ex.valid, -1e9)
    p = logits.softmax(dim=1).double() * ex.valid.any(dim=1, keepdim=True)
    total = p.new_zeros(())
    band = ~ex.first_click
    if band.any():
        pb, inter, union, area = p[band], ex.inter[band], ex.union[band], ex.gt_area[band]
        union_if_empty = area * (~ex.valid[band].any(dim=1))  # a tap with no candidate: empty mask
        total = total + (pb * inter).sum() / ((pb * union).sum() + union_if_empty.sum())
        good = torch.sigmoid((inter / union - IOU_GOOD) * 50.0)
        total = total + (area[:, None] * pb * good).sum() / area.sum()
    if first_click_weight and ex.first_click.any():
        fc = ex.first_click
        total = total + first_click_weight * (p[fc] * ex.inter[fc] / ex.union[fc]).sum(dim=1).mean()
    return total


def choice_metrics(choice: torch.Tensor, ex: TapExamples) -> dict[str, float]:
    """When tap ``i`` takes candidate ``choice[i]`` (``-1``: empty mask): over the band taps the pooled mIoU-T
    and the area-weighted share of IoU >= 0.7 (``mta_taps``), over the first clicks their mean IoU
    (``first_click_iou``); a key is left out when its taps are absent."""
    idx = torch.arange(len(choice))
    c = choice.clamp(min=0)
    took = choice >= 0
    inter = torch.where(took, ex.inter[idx, c], torch.zeros_like(ex.gt_area))
    union = torch.where(took, ex.union[idx, c], ex.gt_area)
    band, fc = ~ex.first_click, ex.first_click
    good = (inter / union) >= IOU_GOOD
    out = {}
    if band.any():
        out["miou_t"] = float(inter[band].sum() / union[band].sum())
        out["mta_taps"] = float((ex.gt_area * good)[band].sum() / ex.gt_area[band].sum())
    if fc.any():
        out["first_click_iou"] = float((inter[fc] / union[fc]).mean())
    return out


def ranker_choice(ranker: Callable[[torch.Tensor], torch.Tensor], ex: TapExamples) -> torch.Tensor:
    """Index of the ranker's pick per tap (``-1`` where a tap has no candidate); ``ranker``: a
    :class:`~tracenet.model.tap_ranker.TapRanker` or any ``features [..., F] -> scores [...]`` function."""
    with torch.no_grad():
        s = ranker(ex.features).masked_fill(~ex.valid, -float("inf"))
    return torch.where(ex.valid.any(dim=1), s.argmax(dim=1), torch.full_like(s[:, 0], -1, dtype=torch.long))


def fit_tap_ranker(ex: TapExamples, *, hidden: int = 16, iters: int = 600, lr: float = 0.01,
                   weight_decay: float = 1e-4, seed: int = 0, first_click_weight: float = 0.0,
                   info: dict | None = None) -> TapRanker:
    """Fit a ranker (``hidden = 0``: linear) maximising :func:`soft_objective` on ``ex``."""
    mean, std, layers = fit_ranker_layers(ex, hidden=hidden, iters=iters, lr=lr, weight_decay=weight_decay,
                                          seed=seed, first_click_weight=first_click_weight)
    return TapRanker(mean, std, layers, dict(info or {}))


def fit_ranker_layers(ex: TapExamples, *, hidden: int = 16, iters: int = 600, lr: float = 0.01,
                      weight_decay: float = 1e-4, seed: int = 0, first_click_weight: float = 0.0
                      ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """:func:`fit_tap_ranker`'s fit for any number of features ``F = ex.features.shape[-1]`` (e.g. features a
    probe adds to :data:`FEATURE_NAMES`): ``(mean [F], std [F], layers)`` for
    :func:`~tracenet.model.tap_ranker.mlp_scores`."""
    if not ex.valid.any():
        raise ValueError("no tap has a candidate: nothing to fit the ranker on")
    if not (~ex.first_click).any() and not first_click_weight:
        raise ValueError("only first clicks and first_click_weight=0: nothing to fit the ranker on")
    gen = torch.Generator().manual_seed(seed)
    in_objective = torch.ones_like(ex.first_click) if first_click_weight else ~ex.first_click
    flat = ex.features[ex.valid & in_objective[:, None]]  # normalise over the taps the objective sees
    mean, std = flat.mean(0), flat.std(0).clamp(min=1e-3)
    dims = [ex.features.shape[-1]] + ([hidden] if hidden else []) + [1]
    layers = []
    for d_in, d_out in zip(dims, dims[1:]):
        bound = 1.0 / d_in**0.5
        w = (torch.rand(d_out, d_in, generator=gen) * 2 - 1) * bound
        layers.append((w.requires_grad_(), torch.zeros(d_out, requires_grad=True)))
    params = [t for wb in layers for t in wb]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    for _ in range(iters):
        loss = -soft_objective(mlp_scores(ex.features, mean, std, layers), ex, first_click_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return mean, std, [(w.detach().clone(), b.detach().clone()) for w, b in layers]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="TraceNet .safetensors checkpoint")
    p.add_argument("--data", type=Path, required=True, help="folder with train.json and images/")
    p.add_argument("--ann", default="train.json", help="annotation file inside --data (default train.json)")
    p.add_argument("--also", type=Path, action="append", default=[], metavar="ANN_JSON",
                   help="a further COCO annotation file whose annotated objects' taps join the fit (images in the "
                        "images/ folder beside it; repeatable), e.g. ../shared/data/coco-single/single.json: only "
                        "annotated objects are tapped, so partial annotation is fine")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (model + ranker)")
    p.add_argument("--max-images", type=int, default=None, help="only the first N images")
    p.add_argument("--hidden", type=int, default=16, help="hidden units (0: linear; default 16)")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="share of images held out to report the ranker against the paper's rule (default 0.2)")
    p.add_argument("--first-click-weight", type=float, default=0.0,
                   help="weight of the first clicks' mean IoU in the objective (default 0: band taps only)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import tracenet
    from tracenet.model import load_checkpoint, read_checkpoint, save_checkpoint

    seg = tracenet.load(args.model, selection="paper", refine="none", zoom=False)
    sources = [args.data / args.ann, *args.also]
    parts = [collect_tap_examples(seg, ann, ann.parent / "images" if ann != sources[0] else args.data / "images",
                                  max_images=args.max_images) for ann in sources]
    ex = TapExamples.concat(parts)
    n_img = int(ex.image_index.max()) + 1
    held = torch.cat([e.image_index >= held_out_from(e, args.holdout) for e in parts])  # the last share of each
    report = {}
    if held.any() and (~held).any():
        probe = fit_tap_ranker(ex.subset(~held), hidden=args.hidden, first_click_weight=args.first_click_weight)
        held_ex = ex.subset(held)
        report = {"holdout_images": int(len(ex.image_index[held].unique())),
                  "holdout_paper": choice_metrics(paper_choice(held_ex), held_ex),
                  "holdout_ranker": choice_metrics(ranker_choice(probe, held_ex), held_ex)}
        print(f"held-out images: paper's rule {report['holdout_paper']}, ranker {report['holdout_ranker']}")
    info = {"data": ", ".join(map(str, sources)), "images": n_img, "taps": int((~ex.first_click).sum()),
            "first_clicks": int(ex.first_click.sum()), "hidden": args.hidden,
            "first_click_weight": args.first_click_weight, **report}
    ranker = fit_tap_ranker(ex, hidden=args.hidden, first_click_weight=args.first_click_weight, info=info)
    print(f"all {n_img} images (fitted on): ranker {choice_metrics(ranker_choice(ranker, ex), ex)}")
    model, cfg, meta = load_checkpoint(args.model)
    stored = next((t.dtype for t in read_checkpoint(args.model)[0].values() if t.is_floating_point()), torch.float32)
    save_checkpoint(args.out, model, cfg, {**meta, "tap_ranker": ranker.to_dict()}, dtype=stored)
    print(f"wrote {args.out}")
    return 0


def held_out_from(ex: TapExamples, share: float) -> int:
    """The first held-out image index of one collection: its last ``share`` of images are held out."""
    n = int(ex.image_index.max()) + 1 if len(ex.image_index) else 0
    return n - int(round(share * n))


def paper_choice(ex: TapExamples) -> torch.Tensor:
    """Stand-in for the paper's rule on collected examples: the highest ``cls * ctr`` candidate (feature 0 is
    its logit). NMS does not change the top-1; the predictor's covering fallback is not modelled."""
    s = ex.features[..., 0].masked_fill(~ex.valid, -float("inf"))
    return torch.where(ex.valid.any(dim=1), s.argmax(dim=1), torch.full_like(s[:, 0], -1, dtype=torch.long))


if __name__ == "__main__":
    raise SystemExit(main())
