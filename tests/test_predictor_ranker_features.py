"""The tap ranker's inputs without upsampling every candidate's mask: features counted on the stride-8 logits
(once per level) equal the features counted on each candidate's full-size mask (the previous computation), and
the masks handed to the core equal the dynamic mask head's upsampled output, on real photos and taps."""

from __future__ import annotations

import pytest
import torch

from tracenet.io import load_image
from tracenet.model import candidate_mask_probs
from tracenet.model.geometry import STRIDES
from tracenet.model.tap_ranker import candidate_features
from tracenet.predictor import DEFAULT_CHECKPOINT, MASK_STRIDE, TapSegmenter
from tracenet.tap.geometry import align_tap

EXAMPLES = DEFAULT_CHECKPOINT.parents[1] / "examples"
pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(), reason="the bundled checkpoint is not here")


NEAR = 1e-6
"""Full-size probabilities this close to 0.5 may land on either side in the logit-based count (float32 summation
order of the two bilinear stages, see tracenet.deploy.mask_stats): its documented tolerance."""


def _full_size_features(cands, probs, p3_cell, threshold: float = 0.5) -> torch.Tensor:
    """The features as they were computed before: area and cover counted on each full-size mask."""
    r, c = p3_cell
    s = STRIDES[0]
    masks = [p > threshold for p in probs]
    return candidate_features(
        scores=torch.tensor([x.score for x in cands]), cls_probs=torch.tensor([x.cls_prob for x in cands]),
        ctr_probs=torch.tensor([x.ctr_prob for x in cands]), boxes=torch.tensor([x.box for x in cands]),
        levels=[x.level for x in cands], mask_areas=torch.tensor([int(m.sum()) for m in masks]),
        covers=torch.tensor([bool(m[r * s:(r + 1) * s, c * s:(c + 1) * s].any()) for m in masks]))


def _taps(h: int, w: int, n: int = 7) -> list[tuple[int, int]]:
    """A grid of taps including the corners and the last row / column (x, y)."""
    xs = [round(i * (w - 1) / (n - 1)) for i in range(n)]
    ys = [round(i * (h - 1) / (n - 1)) for i in range(n)]
    return [(x, y) for y in ys for x in xs]


@pytest.mark.parametrize(("photo", "mask_region"), [("cat.png", "image"), ("coffee.png", "box")])
def test_logit_features_equal_full_size_mask_features(photo: str, mask_region: str) -> None:
    seg = TapSegmenter.from_checkpoint(mask_region=mask_region, min_score=0.0)
    assert seg.ranker is not None
    seg.set_image(load_image(EXAMPLES / photo))
    h, w = seg.image_hw
    checked = exact = taps = 0
    for use_rft in (True, False):
        for xy in _taps(h, w, 5):
            rows_cols = align_tap(seg._to_net(xy), seg.net_hw)
            gathered, mask_feats, _ = (seg._traced if use_rft else seg._full)(rows_cols)
            cands, mask_probs, feats, _, _ = seg.ranker_inputs(gathered, rows_cols, mask_feats, use_rft)
            probs = [mask_probs(k).dense() for k in range(len(cands))]
            # equal to the full-size masks' features, except where a pixel lies within NEAR of 0.5 (then between
            # the features of the masks thresholded just above and just below 0.5; equal when there is none)
            fewer = _full_size_features(cands, probs, rows_cols[0], 0.5 + NEAR)
            more = _full_size_features(cands, probs, rows_cols[0], 0.5 - NEAR)
            low, high = torch.minimum(fewer, more), torch.maximum(fewer, more)
            assert bool(((feats >= low) & (feats <= high)).all()), (photo, xy, use_rft)
            exact += int(torch.equal(feats, _full_size_features(cands, probs, rows_cols[0])))
            taps += 1
            if mask_region == "image":  # the probabilities are the mask head's own, bit for bit
                for cand, p in zip(cands, probs):
                    assert torch.equal(p, candidate_mask_probs(mask_feats, cand, seg.net_hw))
            else:  # zero outside the box window's whole cells
                for cand, p in zip(cands, probs):
                    rect = seg._box_window(cand)
                    inside = torch.zeros_like(p, dtype=torch.bool)
                    inside[rect.r0 * MASK_STRIDE:rect.r1 * MASK_STRIDE, rect.c0 * MASK_STRIDE:rect.c1 * MASK_STRIDE] = True
                    assert not p[~inside].any()
            checked += len(cands)
    assert checked > 80  # every tap had candidates to compare (min_score 0: all 5 levels)
    assert exact >= taps - 2  # pixels that close to 0.5 are rare: nearly every tap's features are bit-equal


def test_ranked_taps_upsample_only_what_the_core_asks_for() -> None:
    seg = TapSegmenter.from_checkpoint(require_tap_inside=False)
    seg.set_image(load_image(EXAMPLES / "cat.png"))
    calls = []
    upsample = seg._probs_from_logits

    def counting(*args):
        calls.append(1)
        return upsample(*args)

    seg._probs_from_logits = counting
    res = seg.predict((200, 150))
    assert res.found and len(calls) == 1
